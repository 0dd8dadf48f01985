"""`results.json`: what a finished run produced, written last (atomically) into its run folder by
`sft.experiment.run`, so its presence means "finished". The runner reads its `config_hash` to resume,
the report one row per run from it, an export the labels, calibration and thresholds the run fixed.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from sft.results.records import Record

TRAINED, REUSED = "trained", "reused"  # `adapter_source`
AdapterSource = Literal["trained", "reused"]
Number = int | float  # a union keeps an integer an integer when the record is written again

# Keys results.json gained after its first form; a file written before one existed is read as null.
_ADDED_BEFORE_VERSIONING = (
    "n_test", "test_hash", "n_shots", "labels", "thresholds", "threshold_source", "training", "training_key",
    "adapter_source", "adapter", "calibration", "versions", "finished_at",
)  # fmt: skip


class Timings(BaseModel):
    """Wall-clock seconds the run spent."""

    model_config = ConfigDict(extra="forbid")

    train_seconds: Number | None = Field(
        default=None,
        description="Training this run's adapter; null when it trained nothing or reused a shared adapter.",
    )
    inference_seconds: Number | None = Field(default=None, description="Scoring and predicting the test split.")
    total_seconds: Number | None = Field(
        default=None, description="The whole run, loading and training included (a reused adapter's training is not)."
    )


class InitializationRecord(BaseModel):
    """How the adapter's LoRA layers were initialized before training, when sft ran an initialization: one of
    its own (pca, pissa, umap: from the weights) or PEFT's data-driven ones (eva, corda: over the training
    inputs)."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(description="`lora.init_lora_weights`: the initialization that ran.")
    examples: int | None = Field(
        description="Training examples its pass read (the shots, never validation or test); null when it reads "
        "the weights alone."
    )
    from_cache: bool = Field(
        description="Whether its result came from the initialization cache (`$SFT_INIT_CACHE`) instead of being "
        "computed by this training."
    )
    seconds: Number = Field(description="Wall-clock seconds it took (computing it, or reading the cache).")
    layers: int = Field(description="Layers it initialized (EVA: those it gave a rank, possibly 0).")


def _from_unversioned(data: dict[str, Any]) -> dict[str, Any]:
    """Files written before results.json carried a version: the keys added over time may be missing
    (null, as the report always read them), `timings` may be missing or null."""
    upgraded = {key: data.get(key) for key in _ADDED_BEFORE_VERSIONING} | data
    return upgraded | {"timings": data.get("timings") or {}}


class ResultsRecord(Record):
    """`RESULTS/<experiment>/seed-<n>/results.json`: one finished run (experiment and seed), written last,
    so its presence means the run finished. Every key is always present (null when it does not apply), except
    the keys added later and left out when null (`OMIT_WHEN_NULL`): `output_schema` (structured runs), the
    adapter-cost keys and `initialization`."""

    FILE: ClassVar[str] = "results.json"
    UPGRADES: ClassVar[dict[int, Any]] = {0: _from_unversioned}
    # keys added after the format was fixed, left out when null so a file written before them reads and writes
    # back unchanged
    OMIT_WHEN_NULL: ClassVar[frozenset[str]] = frozenset(
        {
            "output_schema",
            "adapter_method",
            "trainable_parameters",
            "adapter_bytes",
            "seconds_per_step",
            "initialization",
        }
    )

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    experiment: str = Field(description="The experiment's name (the grid's key; the run folder's parent).")
    seed: int = Field(description="The run's random seed.")
    config_hash: str = Field(
        description="The hash of the settings that differ from the schema defaults; a rerun with the same hash "
        "skips the run."
    )
    task_type: str = Field(description="`dataset.task_type`: classification, multilabel or generation.")
    metrics: dict[str, Any] = Field(
        description="The task's metrics on the test split, by name (per-class values and the confusion matrix nested)."
    )
    n_test: int | None = Field(description="Test examples scored.")
    test_hash: str | None = Field(
        description="sha256 of the test inputs and references in order (`sft.results.fingerprint`); the report "
        "compares two runs only when it is equal."
    )
    n_shots: int | None = Field(description="Training examples (0: zero-shot).")
    labels: list[str] | None = Field(description="The label set, in order; null for generation.")
    thresholds: dict[str, float] | None = Field(
        description="Multilabel: each label's decision threshold (may be Infinity: no validation example was positive)."
    )
    threshold_source: str | dict[str, Any] | None = Field(
        description='Multilabel: "fixed", or what the thresholds were tuned on: {split, examples, split_examples, '
        "chosen_by}."
    )
    training: dict[str, Any] | None = Field(
        description="Training statistics (examples, loss, steps, parameters, world size, the model selection's "
        "curve and best step; the batching: `batching_used` (padding_free, length_grouped or padded), `attention`, "
        "`train_tokens`, `tokens_per_second` (the examples' tokens, not pads, per second of training) and "
        "`padding_share` (of the positions computed)); null for zero-shot."
    )
    training_key: str | None = Field(
        description="The hash of the settings that decide the trained adapter; runs with one key and seed share "
        "one adapter. Null when nothing is trained."
    )
    adapter_source: AdapterSource | None = Field(
        description='"trained": this run trained its adapter; "reused": another run (or `train`) did; null without a '
        "trained adapter."
    )
    adapter: str | None = Field(
        description="The adapter the run predicted with: relative to the results folder when inside it, else as given."
    )
    calibration: dict[str, Any] | None = Field(
        description="The calibration's method and fitted parameters (prior, gamma), which an export applies again."
    )
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="Structured: the JSON Schema the answers were decoded under and scored by (configured, or "
        "inferred from the training targets); null for other tasks.",
    )
    timings: Timings = Field(description="Wall-clock seconds.")
    versions: dict[str, str | None] | None = Field(
        description="Python, sft and the libraries that ran, the torch build, its CUDA version and the GPU's name."
    )
    finished_at: str | None = Field(description="When the run finished (ISO 8601, UTC).")
    config: dict[str, Any] = Field(description="The run's resolved config: every section, every default filled in.")
    # The adapter's cost (fields added with defaults: a file written before them reads as null).
    adapter_method: str | None = Field(
        default=None,
        description="`lora.method` of the adapter the run predicted with; absent without one.",
    )
    trainable_parameters: int | None = Field(
        default=None,
        description="Parameters the adapter trained (the head's included in head mode); absent without one.",
    )
    adapter_bytes: int | None = Field(
        default=None,
        description="The adapter's weights on disk (adapter_model.* files), in bytes; absent without one.",
    )
    seconds_per_step: Number | None = Field(
        default=None,
        description="The trainer's wall-clock seconds per optimizer step (evaluations during training included); "
        "absent without training statistics.",
    )
    # Added like the adapter's cost: a new key, absent when null, so the version stays (fields are only added).
    initialization: InitializationRecord | None = Field(
        default=None,
        description="How the adapter's training initialized its LoRA layers, when sft ran an initialization (its "
        "own, or PEFT's EVA and CorDA over the training inputs); absent otherwise, and for a reused adapter it is "
        "the training run's.",
    )
