"""`aggregated_results.json`: the report of a results folder for pandas (`AggregatedResults`), one row
per finished run with every setting and metric, rebuilt from the result files by `sft.report.aggregate`.
Fields are only ever added; `schema_version` changes when one changes meaning.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from sft.results.layout import REPORT_FILES
from sft.results.records import Record

Number = int | float  # a union keeps an integer an integer (0, not 0.0) in the file


def _absent(value: Any) -> bool:
    """Fields added after a file's format was fixed are left out when null, so a file written before them
    reads and writes back unchanged."""
    return value is None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Summary(_Strict):
    """What the Markdown report's summary says, as numbers."""

    runs_done: int = Field(description="Runs with a readable results.json.")
    runs_failed: int = Field(description="Runs that ended without results (listed in `failures`).")
    runs_skipped: int = Field(description="Always 0: kept for schema version 2; the runner writes no skipped state.")
    runs_missing: int = Field(description="Runs not finished: running, interrupted, not started (`missing`).")
    experiments_done: int = Field(description="Experiments with at least one finished run.")
    datasets: list[str] = Field(description="The finished runs' datasets (path, and configuration name).")
    models: list[str] = Field(description="The finished runs' models.")
    compute_seconds: Number = Field(
        description="The finished runs' total_seconds summed (a shared training counts once, in the run that "
        "trained it)."
    )
    failed_compute_seconds: Number = Field(description="The failed runs' duration_seconds summed.")
    trainings: int = Field(description="Finished runs that trained their adapter.")
    adapters_reused: int = Field(description="Finished runs that reused a shared adapter.")


class Row(_Strict):
    """One finished run (experiment and seed), from its results.json."""

    experiment: str = Field(description="The experiment's name.")
    seed: int = Field(description="The run's seed.")
    status: Literal["done"] = Field(description="Always done: only finished runs are rows.")
    task_type: str = Field(description="classification, multilabel or generation.")
    dataset: str = Field(description="The dataset's path, with its configuration name in parentheses when it has one.")
    model: str | None = Field(description="`model.name`.")
    config_hash: str = Field(description="The config hash (the runner resumes by it).")
    training_key: str | None = Field(description="The shared adapter's training key; null when nothing is trained.")
    adapter_source: str | None = Field(description="trained, reused, or null without a trained adapter.")
    finished_at: str | None = Field(description="When the run finished (ISO 8601, UTC).")
    n_test: int | None = Field(description="Test examples scored.")
    test_hash: str | None = Field(description="The hash of the test inputs (null in results written before it).")
    n_shots: int | None = Field(description="Training examples.")
    train_seconds: Number | None = Field(description="Seconds this run spent training.")
    inference_seconds: Number | None = Field(description="Seconds spent scoring the test split.")
    total_seconds: Number | None = Field(description="Seconds the run took.")
    trainable_parameters: int | None = Field(
        default=None, exclude_if=_absent, description="Parameters the adapter trained."
    )
    adapter_bytes: int | None = Field(
        default=None, exclude_if=_absent, description="The adapter's weight files on disk, in bytes."
    )
    seconds_per_step: Number | None = Field(default=None, exclude_if=_absent, description="Seconds per training step.")
    folder: str = Field(description="The run folder, relative to the results folder: `<experiment>/seed-<n>`.")
    thresholds: dict[str, float] | None = Field(description="Multilabel: each label's threshold.")
    threshold_source: str | dict[str, Any] | None = Field(description="Multilabel: what the thresholds were tuned on.")
    labels: list[str] | None = Field(description="The label set; null for generation.")
    settings: dict[str, Any] = Field(description="The resolved config, flattened to dotted keys (`lora.r`).")
    selection: dict[str, Any] | None = Field(
        description="Model selection during training: best step, its validation metric, the learning curve."
    )
    tokens_per_second: Number | None = Field(
        default=None, description="Training tokens per second (the examples' tokens, not pads); null without."
    )
    padding_share: Number | None = Field(
        default=None, description="The share of the positions training computed that were padding; null without."
    )
    batching: str | None = Field(
        default=None, description="The training batches: padding_free, length_grouped or padded; null without."
    )
    metrics: dict[str, Number] = Field(
        description="Every numeric metric, nested ones flattened (`per_class.<label>.f1`); lists such as the "
        "confusion matrix stay in results.json."
    )


class Failure(_Strict):
    """A run that ended without results (its status.json says failed)."""

    experiment: str = Field(description="The experiment's name.")
    seed: int = Field(description="The run's seed.")
    folder: str = Field(description="The run folder, relative to the results folder.")
    state: str = Field(description="failed.")
    exit_code: int | None = Field(description="The process's exit code (negative: a signal).")
    reason: str = Field(description="Why it failed: an error, a signal, a timeout, a failed training.")
    duration_seconds: Number | None = Field(description="How long it ran.")
    log: str = Field(description="Its run.log, relative to the results folder.")
    log_tail: str = Field(description="The end of its log.")


class Missing(_Strict):
    """A run of the grid that has not finished: running, interrupted, not started, or in a state this
    version does not know."""

    experiment: str = Field(description="The experiment's name.")
    seed: int | None = Field(description="The run's seed; null for an experiment not started when no seeds were given.")
    folder: str | None = Field(description="The run folder, relative to the results folder; null when not started.")
    state: str = Field(
        description="What its status.json says (running, interrupted, any other state), `no result`, `not started`, "
        "or `done (no results.json)`."
    )


class AggregatedResults(Record):
    """`RESULTS/aggregated_results.json`: the report for pandas, rebuilt from the result files by `aggregate`
    (and by `run-experiments` at the end of a grid). `pandas.json_normalize(document["rows"])` gives the
    same columns as aggregated_results.csv."""

    FILE: ClassVar[str] = REPORT_FILES[0]
    UNVERSIONED: ClassVar[int] = 1  # the foundation's report carried no version: it was version 1
    OLD_VERSION_HINT: ClassVar[str] = "; rebuild it from the result files with `aggregate RESULTS`"

    schema_version: Literal[2] = Field(default=2, description="The version of this file's format.")
    generated_at: str = Field(description="When the report was built (ISO 8601, UTC); the Markdown has no timestamp.")
    summary: Summary = Field(description="The summary's numbers.")
    varying_settings: list[str] = Field(description="Settings that differ between finished runs, dotted.")
    constant_settings: dict[str, Any] = Field(description="Settings every finished run shares, dotted, with the value.")
    rows: list[Row] = Field(description="One row per finished run, sorted by experiment and seed.")
    failures: list[Failure] = Field(description="Runs that failed.")
    skipped: list[Any] = Field(description="Always empty: kept for schema version 2.")
    missing: list[Missing] = Field(description="Runs not finished.")
    problems: list[str] = Field(description="Files that could not be read, each with why.")
    plots: list[str] = Field(description="The plots drawn, relative to the results folder.")
    statistics: dict[str, Any] | None = Field(
        description="Intervals and paired comparisons per section (confidence level, method, resamples, seed, "
        "baseline, McNemar variant, sections with their intervals, comparisons with the difference each could "
        "detect, and variance components; docs/report.md describes each); null with --no-statistics."
    )
