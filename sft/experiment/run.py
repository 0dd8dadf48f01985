"""One experiment and seed: train (few-shot), predict, evaluate, and the result files they leave.

Each command is straight-line code over the experiment's task and predictor (`sft.tasks`,
`sft.predictors`), picked once from the config: prepare the data (checked before any model loads),
load, train when the config has shots, let the predictor score and the task predict, compute the
task's metrics. `results.json` (`sft.results.run_record.ResultsRecord`) is written last and atomically,
so its presence means the run finished.

A few-shot run trains once per training key and seed (`ExperimentConfig.training_key`): it reuses the
shared adapter of its key when one is ready, else trains and publishes it (the protocol is
`sft.experiment.shared_adapter`). `Run.share_training=False` trains its own.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sft.config import ConfigError, ExperimentConfig
from sft.data.prepare import ExperimentData, prepare_data
from sft.experiment.preflight import experiment_problems
from sft.experiment.shared_adapter import Training, adapter_folder, adapter_to_load, keep, train_or_reuse
from sft.predictors import predictor_for
from sft.predictors.base import Loaded, Predictor, quiet_libraries
from sft.results.files import atomic_write_jsonl
from sft.results.fingerprint import hash_test_inputs
from sft.results.layout import Run, write_config
from sft.results.logs import run_log
from sft.results.run_record import REUSED, TRAINED, ResultsRecord, Timings
from sft.search.trial import Reporter, trial_marker
from sft.tasks import task_for
from sft.tasks.base import Prediction, Task, task_metrics
from sft.tracking.child import tracked
from sft.tracking.wandb_run import wandb_ended
from sft.training.common import is_main_process, save_adapter, seed_everything
from sft.training.selection import observed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Experiment:
    """One experiment and seed set up to run: its config and run, the task and predictor picked for it,
    its data (checked before any model loads) and when the command began."""

    config: ExperimentConfig
    run: Run
    task: Task
    predictor: Predictor
    data: ExperimentData
    started: float


@dataclass(frozen=True)
class UsedAdapter:
    """What results.json records about the adapter a run predicted with."""

    source: str | None = None  # TRAINED, REUSED, or None without a trained adapter
    path: str | None = None
    training: dict[str, Any] | None = None  # the training statistics, when this run trained or reused one
    train_seconds: float | None = None  # time this run spent training

    @classmethod
    def of(cls, training: Training) -> UsedAdapter:
        return cls(training.source, str(training.folder), training.stats, training.seconds)


def _run_log(run: Run) -> Any:
    return run_log(run.folder, f"Run {run.name} (seed {run.seed})")


def _setup(config: ExperimentConfig, run: Run) -> Experiment:
    """The experiment's task and predictor, and its data (checked before any model loads)."""
    started = time.time()
    task = task_for(config)
    return Experiment(
        config, run, task, predictor_for(config, task), prepare_data(config, run.seed, task=task), started
    )


def _load(experiment: Experiment, adapter: str | None, trainable: bool = False) -> Loaded:
    """Load model and tokenizer (with `adapter` applied), then save the resolved config. Callers prepare
    the data first, so a bad dataset never costs a model load."""
    config, run = experiment.config, experiment.run
    quiet_libraries()
    loaded = experiment.predictor.load(config, experiment.task, experiment.data.labels, adapter, trainable)
    write_config(config, run)  # only once the run really starts: a failed load leaves a finished run's as it was
    return loaded


def check_before_running(config: ExperimentConfig, run: Run, command: str, check_models: bool = True) -> None:
    """Everything a single command (`train`, `predict`, `evaluate`, `run-experiment`) would refuse: config,
    data, model (sft.experiment.preflight) and, to predict with a trained adapter, that it exists. Called
    before the run folder is created or touched, so a refused command leaves the results as they were."""
    problems = experiment_problems({run.name: config}, check_data=True, check_models=check_models)
    if command in ("predict", "evaluate"):
        try:
            adapter_to_load(config, run)
        except ConfigError as error:
            problems += error.messages
    if problems:
        raise ConfigError(problems)


def _train(experiment: Experiment) -> Training:
    """Train and (on the main process) keep the adapter: in the store when shared (the key's lock is held
    by `train_or_reuse`), else in the run folder."""
    config, run = experiment.config, experiment.run
    # Weights the checkpoint lacks (a classification head) are drawn from the global RNG as the model
    # loads: seeded, they depend on the run's seed alone, not on what ran before in this process.
    seed_everything(run.seed)
    loaded = _load(experiment, None, trainable=True)
    trained = experiment.predictor.fit(config, experiment.task, experiment.data, loaded, run.seed, run.folder)
    seconds = time.time() - experiment.started
    folder = adapter_folder(config, run)
    if is_main_process():

        def save(target: Path) -> Path:
            return save_adapter(trained.model, loaded.tokenizer, target, trained.initial_adapter)

        folder = keep(config, run, save, trained.stats, seconds)
        log.info("Saved the adapter to %s (train loss %.4f)", folder, trained.stats["train_loss"])
    return Training(TRAINED, folder, trained.stats, seconds, Loaded(trained.model, loaded.tokenizer))


def _training(experiment: Experiment) -> Training:
    return train_or_reuse(experiment.config, experiment.run, lambda: _train(experiment))


def train(config: ExperimentConfig, run: Run) -> Path:
    """Train the adapter of a few-shot experiment and save it with the tokenizer (and the resolved config
    in the run folder); a shared adapter of the same training key and seed is reused, not retrained."""
    with _run_log(run):
        experiment = _setup(config, run)
        write_config(config, run)
        return _training(replace(experiment, started=time.time())).folder  # train_seconds: the training alone


def predict(config: ExperimentConfig, run: Run) -> Path:
    """Write predictions.jsonl for the test split with the base model (zero-shot) or the trained adapter."""
    with _run_log(run):
        experiment = _setup(config, run)
        loaded = _load(experiment, adapter_to_load(config, run))
        scorer = experiment.predictor.scorer(config, experiment.task, experiment.data, loaded, run.seed)
        prediction = experiment.task.predict(config, experiment.data, scorer)
        return atomic_write_jsonl(run.folder / "predictions.jsonl", prediction.rows)


def evaluate(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """Predict and score the test split; write predictions.jsonl and results.json (its content returned)."""
    with _run_log(run):
        experiment = _setup(config, run)
        adapter = adapter_to_load(config, run)
        loaded = _load(experiment, adapter)
        source = REUSED if config.trains and not config.model.adapter else None
        return _evaluate(experiment, loaded, UsedAdapter(source, adapter)).content()


def run_experiment(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """Train when shots > 0 (or reuse the shared adapter of the training key), then evaluate, in one
    process; results.json's content. Under data-parallel training only the main process evaluates; the
    others return the training statistics. In a search's trial folder (`sft.search`) it runs the trial; under
    a tracked grid the run logs its child run (`sft.tracking`)."""
    if trial_marker(run.folder) is not None:
        return run_trial(config, run)
    with _run_log(run), tracked(config, run, enabled=is_main_process()):
        experiment = _setup(config, run)
        if not config.trains:
            adapter = adapter_to_load(config, run)
            return _evaluate(experiment, _load(experiment, adapter), UsedAdapter(path=adapter)).content()
        training = _training(experiment)
        if not is_main_process():
            return training.stats
        loaded = training.loaded or _load(experiment, str(training.folder))
        return _evaluate(experiment, loaded, UsedAdapter.of(training)).content()


def run_trial(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """A search's trial: train with model selection on the validation split, each evaluation reported to the
    study's pruner (which may stop it), then tell the study the outcome. Nothing is predicted on the test
    split (it is loaded only for the label set, as in every run) and no adapter is kept: only the chosen
    configuration's runs are tested."""
    marker = trial_marker(run.folder)
    assert marker is not None
    with _run_log(run), wandb_ended(config, run):
        experiment = _setup(config, run)
        seed_everything(run.seed)
        loaded = _load(experiment, None, trainable=True)
        reporter = Reporter(config, marker, run.results_path)
        with observed(reporter):
            trained = experiment.predictor.fit(config, experiment.task, experiment.data, loaded, run.seed, run.folder)
        if not is_main_process():
            return trained.stats
        told = reporter.finish(trained.stats.get("selection"), time.time() - experiment.started)
        log.info("Trial %d of the search of %s: %s", marker.number, marker.experiment, told)
        return told


def _evaluate(experiment: Experiment, loaded: Loaded, used: UsedAdapter) -> ResultsRecord:
    """Score the test split with `loaded`, write predictions.jsonl, then results.json (last)."""
    config, run, task, data = experiment.config, experiment.run, experiment.task, experiment.data
    began = time.time()
    prediction = task.predict(config, data, experiment.predictor.scorer(config, task, data, loaded, run.seed))
    inference_seconds = time.time() - began
    atomic_write_jsonl(run.folder / "predictions.jsonl", prediction.rows)
    metrics = task_metrics(config, task, prediction, data.labels)
    timings = Timings(
        train_seconds=used.train_seconds,
        inference_seconds=inference_seconds,
        total_seconds=time.time() - experiment.started,
    )
    n_shots = len(data.shots) if data.shots is not None else 0
    results = results_record(config, run, prediction, metrics, n_shots, data.labels, timings, used)
    results.write(run.folder / ResultsRecord.FILE)
    headline = {key: round(value, 4) for key, value in metrics.items() if isinstance(value, float)}
    log.info("Finished %s seed %d: %s", run.name, run.seed, headline)
    return results


def _relative(adapter: str | None, results_path: Path) -> str | None:
    """The adapter's folder relative to the results folder when inside it (results move with it)."""
    if adapter is None:
        return None
    path, root = Path(adapter).resolve(), Path(results_path).resolve()
    return path.relative_to(root).as_posix() if root in path.parents else str(adapter)


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
    timings: Timings,
    used: UsedAdapter,
) -> ResultsRecord:
    """The run's results.json (`sft.results.run_record.ResultsRecord`, where each field is described)."""
    return ResultsRecord(
        experiment=run.name,
        seed=run.seed,
        config_hash=config.config_hash(),
        task_type=config.dataset.task_type,
        metrics=metrics,
        n_test=len(prediction.rows),
        test_hash=hash_test_inputs(prediction.rows, config.prompting.input_columns),
        n_shots=n_shots,
        labels=labels,
        thresholds=prediction.details.get("thresholds"),
        threshold_source=prediction.details.get("threshold_source"),
        training={key: value for key, value in used.training.items() if key != "initialization"}
        if used.training is not None
        else None,
        training_key=config.training_key(),
        adapter_source=used.source,
        adapter=_relative(used.path, run.results_path),
        calibration=prediction.details.get("calibration"),
        output_schema=prediction.details.get("schema"),
        timings=timings,
        versions=versions(),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=config.resolved(),
        adapter_method=config.lora.method if used.path is not None and config.lora is not None else None,
        trainable_parameters=(used.training or {}).get("trainable_parameters"),
        adapter_bytes=adapter_bytes(used.path),
        seconds_per_step=(used.training or {}).get("seconds_per_step"),
        initialization=(used.training or {}).get("initialization"),
    )


def adapter_bytes(folder: str | None) -> int | None:
    """The size of an adapter's weight files (adapter_model.safetensors or .bin), or None without one."""
    if folder is None or not Path(folder).is_dir():
        return None
    return sum(path.stat().st_size for path in Path(folder).glob("adapter_model.*")) or None
