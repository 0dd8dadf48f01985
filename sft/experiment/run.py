"""One experiment and seed: train (few-shot), predict, evaluate, and the result files they leave.

Each command is straight-line code over the experiment's task and predictor (`sft.tasks`,
`sft.predictors`), picked once from the config: prepare the data (checked before any model loads),
load, train when the config has shots, let the predictor score and the task predict, compute the
task's metrics. `results.json` is written last and atomically, so its presence means the run finished.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sft.config import ConfigError, ExperimentConfig
from sft.data.prepare import ExperimentData, prepare_data
from sft.evaluation.metrics import compute_metrics
from sft.predictors import predictor_for
from sft.predictors.base import Loaded, Predictor, quiet_libraries
from sft.results.files import atomic_write_json, atomic_write_jsonl
from sft.results.fingerprint import hash_test_inputs
from sft.results.layout import Run, write_config
from sft.results.logs import run_log
from sft.tasks import task_for
from sft.tasks.base import Prediction, Task
from sft.training.common import is_main_process, save_adapter

log = logging.getLogger(__name__)


def _run_log(run: Run) -> Any:
    return run_log(run.folder, f"Run {run.name} (seed {run.seed})")


def _load(
    config: ExperimentConfig, run: Run, task: Task, predictor: Predictor, data: ExperimentData, trainable: bool = False
) -> Loaded:
    """Save the resolved config, then load model and tokenizer (with the adapter to predict with, unless
    training). Callers prepare the data first, so a bad dataset never costs a model load."""
    adapter = None if trainable else adapter_to_load(config, run)
    quiet_libraries()
    write_config(config, run)
    return predictor.load(config, task, data.labels, adapter, trainable)


def adapter_to_load(config: ExperimentConfig, run: Run) -> str | None:
    """The adapter predict/evaluate apply: model.adapter, else this experiment's trained one."""
    if config.model.adapter:
        return config.model.adapter
    if not config.trains:
        return None
    if (run.adapter_folder / "adapter_config.json").exists():
        return str(run.adapter_folder)
    raise ConfigError(
        [
            f"dataset.shots > 0 but no trained adapter at {run.adapter_folder}: run `train` (or `run-experiment`) "
            "first with the same --results-path and --random-seed, or set model.adapter"
        ]
    )


def _train(
    config: ExperimentConfig, run: Run, task: Task, predictor: Predictor, data: ExperimentData
) -> tuple[Loaded, dict[str, Any]]:
    """Train and (on the main process) save the adapter; the trained model and the training statistics."""
    loaded = _load(config, run, task, predictor, data, trainable=True)
    trained = predictor.train(config, task, data, loaded, run.seed, run.folder)
    if is_main_process():
        save_adapter(trained.model, loaded.tokenizer, run.adapter_folder, trained.initial_adapter)
        log.info("Saved the adapter to %s (train loss %.4f)", run.adapter_folder, trained.stats["train_loss"])
    return Loaded(trained.model, loaded.tokenizer), trained.stats


def _setup(config: ExperimentConfig, run: Run) -> tuple[Task, Predictor, ExperimentData]:
    """The experiment's task and predictor, and its data (checked before any model loads)."""
    task = task_for(config)
    return task, predictor_for(config, task), prepare_data(config, run.seed, task=task)


def train(config: ExperimentConfig, run: Run) -> Path:
    """Train the adapter of a few-shot experiment and save it with the tokenizer and resolved config."""
    with _run_log(run):
        _train(config, run, *_setup(config, run))
    return run.adapter_folder


def predict(config: ExperimentConfig, run: Run) -> Path:
    """Write predictions.jsonl for the test split with the base model (zero-shot) or the trained adapter."""
    with _run_log(run):
        task, predictor, data = _setup(config, run)
        loaded = _load(config, run, task, predictor, data)
        prediction = task.predict(config, data, predictor.scorer(config, task, data, loaded, run.seed))
        return atomic_write_jsonl(run.folder / "predictions.jsonl", prediction.rows)


def evaluate(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """Predict and score the test split; write predictions.jsonl and results.json."""
    with _run_log(run):
        started = time.time()
        task, predictor, data = _setup(config, run)
        return _evaluate(config, run, task, predictor, data, _load(config, run, task, predictor, data), started)


def run_experiment(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """Train when shots > 0, then evaluate with the model still in memory, in one process."""
    with _run_log(run):
        started = time.time()
        task, predictor, data = _setup(config, run)
        if not config.trains:
            loaded = _load(config, run, task, predictor, data)
            return _evaluate(config, run, task, predictor, data, loaded, started)
        loaded, training = _train(config, run, task, predictor, data)
        if not is_main_process():
            return training
        train_seconds = time.time() - started
        return _evaluate(config, run, task, predictor, data, loaded, started, training, train_seconds)


def _evaluate(
    config: ExperimentConfig,
    run: Run,
    task: Task,
    predictor: Predictor,
    data: ExperimentData,
    loaded: Loaded,
    started: float,
    training: dict[str, Any] | None = None,
    train_seconds: float | None = None,
) -> dict[str, Any]:
    began = time.time()
    prediction = task.predict(config, data, predictor.scorer(config, task, data, loaded, run.seed))
    inference_seconds = time.time() - began
    atomic_write_jsonl(run.folder / "predictions.jsonl", prediction.rows)
    metric_names = config.evaluation.metrics or task.default_metrics
    metrics = compute_metrics(task.metric_inputs(prediction.rows, data.labels), metric_names, config.evaluation)
    timings = {
        "train_seconds": train_seconds,
        "inference_seconds": inference_seconds,
        "total_seconds": time.time() - started,
    }
    n_shots = len(data.shots) if data.shots is not None else 0
    results = results_record(config, run, prediction, metrics, n_shots, data.labels, training, timings)
    atomic_write_json(run.folder / "results.json", results)
    headline = {key: round(value, 4) for key, value in metrics.items() if isinstance(value, float)}
    log.info("Finished %s seed %d: %s", run.name, run.seed, headline)
    return results


# -- results.json ----------------------------------------------------------------------------------------


VERSIONED_PACKAGES = ("sft", "torch", "transformers", "trl", "peft", "datasets", "accelerate")


def versions() -> dict[str, str | None]:
    """Python, the libraries a run depends on, and the torch build that actually ran: its version with the
    build suffix (`2.14.1+cu130`, not the package metadata's `2.14.1`), its CUDA version (None for a CPU
    build) and the GPU's name when one is visible."""
    import torch

    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = torch.__version__ if package == "torch" else metadata.version(package)
    found["cuda"] = torch.version.cuda
    found["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return found


def results_record(
    config: ExperimentConfig,
    run: Run,
    prediction: Prediction,
    metrics: dict[str, Any],
    n_shots: int,
    labels: list[str] | None,
    training: dict[str, Any] | None,
    timings: dict[str, float | None],
) -> dict[str, Any]:
    """The content of results.json (its schema: every key here, always present)."""
    return {
        "experiment": run.name,
        "seed": run.seed,
        "config_hash": config.config_hash(),
        "task_type": config.dataset.task_type,
        "metrics": metrics,
        "n_test": len(prediction.rows),
        "test_hash": hash_test_inputs(prediction.rows, config.prompting.input_columns),  # the report pairs runs by it
        "n_shots": n_shots,
        "labels": labels,
        "thresholds": prediction.details.get("thresholds"),
        "training": training,
        "calibration": prediction.details.get("calibration"),
        "timings": timings,
        "versions": versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.resolved(),
    }
