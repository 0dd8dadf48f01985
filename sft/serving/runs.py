"""What a finished run folder gives an export: its config, its results, the adapter it predicted with,
and what it fixed for its test predictions (`Fixed`: labels, in-context examples, calibration).

A run folder is `RESULTS/<experiment>/seed-<n>/` (`sft.results.layout.Run.from_folder`); `results.json`
(`ResultsRecord`) marks it finished. The adapter path is read through
`sft.experiment.shared_adapter.adapter_to_load`, the function `predict` itself uses, so an export
always applies the adapter the run's predictions came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.config import ConfigError, ExperimentConfig, parse_config
from sft.data.prepare import prepare_data
from sft.experiment.shared_adapter import adapter_to_load
from sft.predictors.base import Fixed
from sft.results.files import read_json
from sft.results.layout import Run
from sft.results.run_record import ResultsRecord
from sft.serving.manifest import read_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinishedRun:
    """A run folder's config, results.json and Run."""

    config: ExperimentConfig
    results: ResultsRecord
    run: Run


def run_of_folder(folder: Path) -> Run:
    """The Run of a `<results>/<experiment>/seed-<n>` folder; ConfigError for any other folder."""
    try:
        return Run.from_folder(folder)
    except ValueError as error:
        raise ConfigError([str(error)]) from None


def finished_run(config: ExperimentConfig, run: Run) -> FinishedRun:
    """The run's results.json, which must exist (the run finished) and come from `config`."""
    path = run.folder / ResultsRecord.FILE
    if not path.is_file():
        raise ConfigError(
            [
                f"{run.folder}: no results.json, so the run has not finished; run `evaluate` or `run-experiment` "
                "with the same --results-path and --random-seed first (its calibration and thresholds are needed)"
            ]
        )
    results = read_record(ResultsRecord, path)
    if results.config_hash != config.config_hash():
        raise ConfigError([f"{path}: its config_hash is not the config's; the results come from another config"])
    return FinishedRun(config, results, run)


def read_run_folder(folder: Path) -> FinishedRun:
    """A finished run from its folder alone (config.json and results.json)."""
    run = run_of_folder(folder)
    config_path = run.folder / "config.json"
    if not config_path.is_file():
        raise ConfigError([f"{run.folder}: no config.json; give a run folder RESULTS/<experiment>/seed-<n>"])
    return finished_run(parse_config(read_json(config_path), str(config_path)), run)


def adapter_of(finished: FinishedRun) -> str | None:
    """The adapter the run's predictions were made with (None: the base model alone)."""
    return adapter_to_load(finished.config, finished.run)


def drawn_per_input(config: ExperimentConfig) -> bool:
    """Whether the run drew in-context examples per test input (which an export cannot repeat)."""
    return config.inference.icl_examples > 0 and not config.inference.icl_fixed


def fixed_of(finished: FinishedRun, task: Any) -> Fixed:
    """What the run fixed: its labels, its calibration's fitted parameters, its schema, and the in-context examples of
    its fixed draw (the first draw when it drew per input: the export shows those before every input)."""
    config, results = finished.config, finished.results
    examples: list[dict[str, Any]] = []
    if config.inference.icl_examples:
        from sft.predictors.causal_lm import sampler_of

        data = prepare_data(config, finished.run.seed, task=task)
        shown = sampler_of(data, finished.run.seed).sample(config.inference.icl_examples, key=0)
        columns = [*config.prompting.input_columns, config.prompting.output_column]
        examples = [{column: example[column] for column in columns} for example in shown]
        if drawn_per_input(config):
            log.warning(
                "The run drew in-context examples per test input; every new input gets the first draw, so "
                "probabilities differ from the run's predictions.jsonl (set inference.icl_fixed to export exactly)"
            )
    return Fixed(results.labels, examples, results.calibration, results.output_schema)
