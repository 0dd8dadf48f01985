"""The Python API: load an exported folder (or a finished run) and predict new inputs.

    from sft.serving.api import load_export
    model = load_export("exports/sentiment")
    model.predict(["Great value.", "Broke after a day."])
    # [{"prediction": "positive", "probabilities": {"negative": 0.02, ...}}, ...]

Predictions come from the run's own code: the predictor's `fixed_scorer` (same prompts, scoring,
normalization, the fitted calibration applied) and the task's `answers` (argmax, or the multilabel
thresholds), so an export's probabilities equal the run's predictions.jsonl for the same inputs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sft.config import ConfigError, ExperimentConfig
from sft.predictors import predictor_for, predictor_name
from sft.predictors.base import Fixed, quiet_libraries
from sft.results.layout import Run
from sft.serving.manifest import Manifest, read_manifest
from sft.serving.payload import Limits, examples_of
from sft.serving.runs import adapter_of, finished_run, fixed_of
from sft.tasks import task_for


class ServedModel:
    """A loaded model with what its run fixed; `predict` is safe to call from several threads (one
    forward at a time)."""

    def __init__(
        self,
        config: ExperimentConfig,
        fixed: Fixed,
        thresholds: dict[str, float] | None,
        adapter: str | None,
        manifest: Manifest | None = None,
    ):
        self.config = config
        self.task = task_for(config)
        predictor = predictor_for(config, self.task)
        quiet_libraries()
        self.loaded = predictor.load(config, self.task, fixed.labels, adapter, False)
        self.scorer = predictor.fixed_scorer(config, self.task, self.loaded, fixed)
        self.labels = fixed.labels
        self.thresholds = thresholds
        self.manifest = manifest
        self._lock = threading.Lock()

    @property
    def input_columns(self) -> list[str]:
        return list(self.config.prompting.input_columns)

    @property
    def batch_size(self) -> int:
        return self.config.inference.batch_size

    def predict(self, inputs: Sequence[str | dict[str, str]], limits: Limits | None = None) -> list[dict[str, Any]]:
        """One prediction per input (a text, or a dict of the input columns), in order; `limits` refuse
        too many or too long inputs (InputError), as the service does."""
        examples = examples_of(list(inputs), self.input_columns, limits)
        if not examples:
            return []
        with self._lock:
            scores = self.scorer(examples)
        return self.task.answers(scores, self.labels, self.thresholds)

    def describe(self) -> dict[str, Any]:
        """What /health reports: task, labels, input columns and the source run."""
        source = self.manifest.source.model_dump(exclude={"metrics"}) if self.manifest else None
        return {
            "task_type": self.config.dataset.task_type,
            "labels": self.labels,
            "input_columns": self.input_columns,
            "batch_size": self.batch_size,
            "source": source,
        }


def export_config(manifest: Manifest, folder: Path) -> ExperimentConfig:
    """The run's config pointed at the export's weights and the run's chat template."""
    config = manifest.experiment_config()
    if predictor_name(config, task_for(config)) != manifest.predictor:
        raise ConfigError([f"{folder}: the manifest's predictor {manifest.predictor!r} is not its config's"])
    update: dict[str, Any] = {"chat_template": manifest.chat_template, "chat_template_from": None}
    if manifest.weights.merged:
        update.update(name=str(folder / "model"), revision=None, quantization=None, adapter=None)
    else:
        update.update(name=manifest.weights.base, adapter=None)
    return config.model_copy(update={"model": config.model.model_copy(update=update)})


def load_export(folder: str | Path) -> ServedModel:
    """The model of an export folder, its files and manifest checked first."""
    folder = Path(folder).resolve()
    manifest = read_manifest(folder)
    fixed = Fixed(manifest.labels, manifest.icl_examples, manifest.calibration, manifest.output_schema)
    adapter = None if manifest.weights.merged else str(folder / "adapter")
    return ServedModel(export_config(manifest, folder), fixed, manifest.thresholds, adapter, manifest)


def load_run(config: ExperimentConfig, run: Run) -> ServedModel:
    """The model of a finished run, straight from its folder (no export): base model and adapter."""
    finished = finished_run(config, run)
    task = task_for(config)
    return ServedModel(config, fixed_of(finished, task), finished.results.thresholds, adapter_of(finished))
