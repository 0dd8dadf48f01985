"""One experiment and seed: train (few-shot), predict, evaluate, and the result files they leave.

Each command is straight-line code over the experiment's task and predictor (`sft.tasks`,
`sft.predictors`), picked once from the config: prepare the data (checked before any model loads),
load, train when the config has shots, let the predictor score and the task predict, compute the
task's metrics. `results.json` is written last and atomically, so its presence means the run finished.

A few-shot run trains once per training key and seed (`ExperimentConfig.training_key`): under the key's
lock it reuses the shared adapter when one is ready (`sft.results.adapters`), else trains and publishes
it, so every other experiment with the key reuses it. `Run.share_training=False` trains its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sft.config import ConfigError, ExperimentConfig
from sft.data.prepare import ExperimentData, prepare_data
from sft.predictors import predictor_for
from sft.predictors.base import Loaded, Predictor, quiet_libraries
from sft.results.adapters import SharedAdapter, shared_adapter
from sft.results.files import atomic_write_json, atomic_write_jsonl
from sft.results.fingerprint import hash_test_inputs
from sft.results.layout import Run, write_config
from sft.results.logs import run_log
from sft.tasks import task_for
from sft.tasks.base import Prediction, Task, task_metrics
from sft.training.common import is_main_process, save_adapter, seed_everything

log = logging.getLogger(__name__)


def _run_log(run: Run) -> Any:
    return run_log(run.folder, f"Run {run.name} (seed {run.seed})")


TRAINED, REUSED = "trained", "reused"  # results.json `adapter_source`


@dataclass(frozen=True)
class Training:
    """What a few-shot run did about its adapter: trained it (the model is still in memory) or reused the
    one another run trained (its statistics come from the store)."""

    source: str  # TRAINED or REUSED
    folder: Path
    stats: dict[str, Any]
    seconds: float | None = None  # time this run spent training; None when reused
    loaded: Loaded | None = None


def _load(
    config: ExperimentConfig,
    run: Run,
    task: Task,
    predictor: Predictor,
    data: ExperimentData,
    adapter: str | None,
    trainable: bool = False,
) -> Loaded:
    """Load model and tokenizer (with `adapter` applied), then save the resolved config. Callers prepare
    the data first, so a bad dataset never costs a model load."""
    quiet_libraries()
    loaded = predictor.load(config, task, data.labels, adapter, trainable)
    write_config(config, run)  # only once the run really starts: a failed load leaves a finished run's as it was
    return loaded


def adapter_folder(config: ExperimentConfig, run: Run) -> Path:
    """Where this run's trained adapter is (or goes): the shared one of its key and seed, or its own."""
    shared = shared_adapter(config, run)
    return shared.adapter_folder if shared is not None else run.adapter_folder


def adapter_to_load(config: ExperimentConfig, run: Run) -> str | None:
    """The adapter predict/evaluate apply: model.adapter, else this experiment's own trained one, else the
    shared one of its training key and seed."""
    if config.model.adapter:
        return config.model.adapter
    if not config.trains:
        return None
    if (run.adapter_folder / "adapter_config.json").exists():
        return str(run.adapter_folder)
    shared = shared_adapter(config, run)
    if shared is not None and shared.ready():
        return str(shared.adapter_folder)
    where = run.adapter_folder if shared is None else f"{run.adapter_folder} or {shared.adapter_folder}"
    raise ConfigError(
        [
            f"dataset.shots > 0 but no trained adapter at {where}: run `train` (or `run-experiment`) "
            "first with the same --results-path and --random-seed, or set model.adapter"
        ]
    )


def check_before_running(config: ExperimentConfig, run: Run, command: str, check_models: bool = True) -> None:
    """Everything a single command (`train`, `predict`, `evaluate`, `run-experiment`) would refuse: config,
    data, model (sft.experiment.preflight) and, to predict with a trained adapter, that it exists. Called
    before the run folder is created or touched, so a refused command leaves the results as they were."""
    from sft.experiment.preflight import experiment_problems

    problems = experiment_problems({run.name: config}, check_data=True, check_models=check_models)
    if command in ("predict", "evaluate"):
        try:
            adapter_to_load(config, run)
        except ConfigError as error:
            problems += error.messages
    if problems:
        raise ConfigError(problems)


def _train(
    config: ExperimentConfig, run: Run, task: Task, predictor: Predictor, data: ExperimentData, started: float
) -> Training:
    """Train and (on the main process) save the adapter: into the store when shared (under the key's lock,
    marker last), else into the run folder."""
    # Weights the checkpoint lacks (a classification head) are drawn from the global RNG as the model
    # loads: seeded, they depend on the run's seed alone, not on what ran before in this process.
    seed_everything(run.seed)
    loaded = _load(config, run, task, predictor, data, None, trainable=True)
    trained = predictor.fit(config, task, data, loaded, run.seed, run.folder)
    seconds = time.time() - started
    shared = shared_adapter(config, run)
    folder = adapter_folder(config, run)
    if is_main_process():

        def save(target: Path) -> Path:
            return save_adapter(trained.model, loaded.tokenizer, target, trained.initial_adapter)

        if shared is None:
            save(folder)
        else:
            shared.publish(save, _store_info(config, run, trained.stats, seconds))
        log.info("Saved the adapter to %s (train loss %.4f)", folder, trained.stats["train_loss"])
    return Training(TRAINED, folder, trained.stats, seconds, Loaded(trained.model, loaded.tokenizer))


def _store_info(config: ExperimentConfig, run: Run, stats: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        "training_key": config.training_key(),
        "seed": run.seed,
        "trained_by": run.name,
        "training": stats,
        "train_seconds": seconds,
        "training_settings": config.training_settings(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _training(
    config: ExperimentConfig, run: Run, task: Task, predictor: Predictor, data: ExperimentData, started: float
) -> Training:
    """Train this run's adapter, unless the store already holds the one of its key and seed. The key's
    lock is held while deciding, training and publishing, so waiting runs of the same key reuse it."""
    shared = shared_adapter(config, run)
    if shared is None:
        return _train(config, run, task, predictor, data, started)
    with _key_turn(shared) as info:
        if info is None:
            return _train(config, run, task, predictor, data, started)
    log.info(
        "Reusing the adapter of training key %s seed %d (trained by %s)", shared.key, run.seed, info.get("trained_by")
    )
    return Training(REUSED, shared.adapter_folder, info.get("training") or {})


@contextlib.contextmanager
def _key_turn(shared: SharedAdapter) -> Any:
    """Hold the key's lock (the main process does); yield the ready adapter's info, or None: train it.

    Under data-parallel `accelerate launch` every rank must decide alike: rank 0 decides under the lock
    and broadcasts its decision, and holds the lock until the adapter is published."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        with shared.lock():
            info = shared.info()
            if info is None:
                shared.clear_leftovers()
            yield info
        return
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    PartialState()  # joins the process group the trainer uses
    lock = shared.lock() if is_main_process() else contextlib.nullcontext()
    with lock:
        decision = [None]
        if is_main_process():
            decision = [shared.info() or None]
            if decision[0] is None:
                shared.clear_leftovers()
        broadcast_object_list(decision, from_process=0)
        yield decision[0]


def _setup(config: ExperimentConfig, run: Run) -> tuple[Task, Predictor, ExperimentData]:
    """The experiment's task and predictor, and its data (checked before any model loads)."""
    task = task_for(config)
    return task, predictor_for(config, task), prepare_data(config, run.seed, task=task)


def train(config: ExperimentConfig, run: Run) -> Path:
    """Train the adapter of a few-shot experiment and save it with the tokenizer (and the resolved config
    in the run folder); a shared adapter of the same training key and seed is reused, not retrained."""
    with _run_log(run):
        task, predictor, data = _setup(config, run)
        write_config(config, run)
        return _training(config, run, task, predictor, data, time.time()).folder


def predict(config: ExperimentConfig, run: Run) -> Path:
    """Write predictions.jsonl for the test split with the base model (zero-shot) or the trained adapter."""
    with _run_log(run):
        task, predictor, data = _setup(config, run)
        loaded = _load(config, run, task, predictor, data, adapter_to_load(config, run))
        prediction = task.predict(config, data, predictor.scorer(config, task, data, loaded, run.seed))
        return atomic_write_jsonl(run.folder / "predictions.jsonl", prediction.rows)


def evaluate(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """Predict and score the test split; write predictions.jsonl and results.json."""
    with _run_log(run):
        started = time.time()
        task, predictor, data = _setup(config, run)
        adapter = adapter_to_load(config, run)
        loaded = _load(config, run, task, predictor, data, adapter)
        source = REUSED if config.trains and not config.model.adapter else None
        return _evaluate(config, run, task, predictor, data, loaded, started, source=source, adapter=adapter)


def run_experiment(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """Train when shots > 0 (or reuse the shared adapter of the training key), then evaluate, in one
    process."""
    with _run_log(run):
        started = time.time()
        task, predictor, data = _setup(config, run)
        if not config.trains:
            adapter = adapter_to_load(config, run)
            loaded = _load(config, run, task, predictor, data, adapter)
            return _evaluate(config, run, task, predictor, data, loaded, started, adapter=adapter)
        training = _training(config, run, task, predictor, data, started)
        if not is_main_process():
            return training.stats
        loaded = training.loaded or _load(config, run, task, predictor, data, str(training.folder))
        return _evaluate(
            config, run, task, predictor, data, loaded, started, training.stats, training.seconds,
            training.source, str(training.folder),
        )  # fmt: skip


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
    source: str | None = None,
    adapter: str | None = None,
) -> dict[str, Any]:
    began = time.time()
    prediction = task.predict(config, data, predictor.scorer(config, task, data, loaded, run.seed))
    inference_seconds = time.time() - began
    atomic_write_jsonl(run.folder / "predictions.jsonl", prediction.rows)
    metrics = task_metrics(config, task, prediction, data.labels)
    timings = {
        "train_seconds": train_seconds,
        "inference_seconds": inference_seconds,
        "total_seconds": time.time() - started,
    }
    n_shots = len(data.shots) if data.shots is not None else 0
    used = (source, _relative(adapter, run.results_path))
    results = results_record(config, run, prediction, metrics, n_shots, data.labels, training, timings, used)
    atomic_write_json(run.folder / "results.json", results)
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
    training: dict[str, Any] | None,
    timings: dict[str, float | None],
    adapter: tuple[str | None, str | None] = (None, None),
) -> dict[str, Any]:
    """The content of results.json (its schema: every key here, always present). `adapter`: whether this
    run trained its adapter or reused one (TRAINED, REUSED, None without a trained adapter) and where it is."""
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
        # "fixed", or {"split", "examples", "split_examples", "chosen_by"}: what the thresholds were tuned on
        "threshold_source": prediction.details.get("threshold_source"),
        "training": training,
        # the shared adapter's key; "trained": this run trained it, "reused": another run (or `train`) did
        "training_key": config.training_key(),
        "adapter_source": adapter[0],
        "adapter": adapter[1],
        "calibration": prediction.details.get("calibration"),
        "timings": timings,
        "versions": versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.resolved(),
    }
