"""One experiment and seed: train (few-shot), predict, evaluate, and the result files they leave.

`RESULTS/<experiment>/seed-<n>/` holds `config.json` (the resolved config and its hash), `adapter/`
(when trained), `predictions.jsonl`, `results.json` and `run.log`. `results.json` is written last
and atomically, so its presence means the run finished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sft.config import ConfigError, ExperimentConfig
from sft.data import ExperimentData, prepare_data
from sft.storage import atomic_write_json, atomic_write_jsonl, atomic_write_text, run_dir

log = logging.getLogger(__name__)

# Set by the grid runner, which already sends the child's whole output to run.log.
RUNNER_LOG_ENV = "SFT_RUN_LOG_CAPTURED"
VERSIONED_PACKAGES = ("sft", "torch", "transformers", "trl", "peft", "datasets", "accelerate")


@dataclass(frozen=True)
class Run:
    """Where one experiment/seed lives."""

    name: str
    seed: int
    results_path: Path

    @property
    def folder(self) -> Path:
        return run_dir(self.results_path, self.name, self.seed)

    @property
    def adapter_folder(self) -> Path:
        return self.folder / "adapter"


@contextlib.contextmanager
def run_logging(run: Run) -> Iterator[None]:
    """Copy this process's log records into the run's run.log (unless the runner captures them)."""
    if os.environ.get(RUNNER_LOG_ENV):
        yield
        return
    run.folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.folder / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    except Exception:
        log.exception("Run %s (seed %d) failed", run.name, run.seed)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def is_main_process() -> bool:
    """Under `accelerate launch` every rank trains; only rank 0 saves the adapter and evaluates."""
    return os.environ.get("RANK", "0") == "0"


def write_config(config: ExperimentConfig, run: Run) -> Path:
    """The resolved config, every default filled in; itself a valid input for every command."""
    return atomic_write_text(run.folder / "config.json", config.model_dump_json(indent=2) + "\n")


def _quiet_libraries() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_warning()


def _load(
    config: ExperimentConfig,
    run: Run,
    adapter: str | None = None,
    trainable: bool = False,
    labels: list[str] | None = None,
) -> tuple[Any, Any]:
    """Save the resolved config, then load model and tokenizer. Callers check the data first, so a bad
    dataset never costs a model load."""
    from sft.loading import load_model, load_tokenizer

    _quiet_libraries()
    write_config(config, run)
    if config.model.head:
        from sft.head import load_head_model

        return load_head_model(config, labels or [], adapter, trainable)
    tokenizer = load_tokenizer(config.model)
    return load_model(config.model, adapter=adapter, trainable=trainable), tokenizer


def train(config: ExperimentConfig, run: Run) -> Path:
    """Train the adapter of a few-shot experiment and save it with the tokenizer and resolved config."""
    with run_logging(run):
        _train(config, run, prepare_data(config, run.seed))
    return run.adapter_folder


def _train(config: ExperimentConfig, run: Run, data: ExperimentData) -> tuple[Any, Any, dict[str, Any]]:
    """(trained model, tokenizer, training statistics); the adapter is saved in the run folder."""
    from sft.head import train_head
    from sft.training import save_adapter, train_adapter

    model, tokenizer = _load(config, run, trainable=True, labels=data.labels)
    trainer = train_head if config.model.head else train_adapter
    model, stats = trainer(config, data, model, tokenizer, run.seed, run.folder)
    if not is_main_process():
        return model, tokenizer, stats
    save_adapter(model, tokenizer, run.adapter_folder)
    log.info("Saved the adapter to %s (train loss %.4f)", run.adapter_folder, stats["train_loss"])
    return model, tokenizer, stats


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


def _predict(
    config: ExperimentConfig,
    data: ExperimentData,
    model: Any,
    tokenizer: Any,
    seed: int,
    report: dict[str, Any] | None = None,
) -> list[dict]:
    """Prediction rows for the test split: inputs, reference, prediction, label probabilities.
    `report` receives details results.json records (the calibration)."""
    from sft.prompting import ICLSampler, PromptBuilder, inference_prompts

    if config.model.head:
        from sft.head import predict_head

        return predict_head(config, data, model, tokenizer)
    if config.dataset.task_type == "multilabel":
        from sft.multilabel import predict_generative

        return predict_generative(config, data, model, tokenizer, seed)
    inference, prompting = config.inference, config.prompting
    builder = PromptBuilder(tokenizer, prompting, inference.max_seq_length)
    sampler = ICLSampler(data.icl_pool, prompting.output_column, data.labels, seed, purpose="inference")
    prompts = inference_prompts(builder, sampler, data.test, inference.icl_examples, inference.icl_fixed)
    rows = [
        {
            **{column: example[column] for column in prompting.input_columns},
            "reference": example[prompting.output_column],
        }
        for example in data.test
    ]
    if config.dataset.task_type == "classification":
        from sft.calibration import calibrate, prompt_context
        from sft.scoring import classification_scores, content_free_prompt

        content_free = content_free_prompt(builder, sampler, prompting.input_columns, inference)

        def score(prompts: list[str]) -> Any:
            # Calibration prompts go through the same normalization as the test prompts.
            return classification_scores(model, tokenizer, prompts, data.labels, inference, content_free)

        scores = score(prompts)
        context = prompt_context(builder, sampler, data, inference, score, seed)
        calibrated = calibrate(inference.calibration_args, scores, context)
        raw = calibrated.uncalibrated
        for index, (row, probs) in enumerate(zip(rows, calibrated.probabilities.tolist())):
            row["prediction"] = data.labels[max(range(len(probs)), key=probs.__getitem__)]
            row["probabilities"] = dict(zip(data.labels, probs))
            if raw is not None:
                row["uncalibrated_probabilities"] = dict(zip(data.labels, raw[index].tolist()))
        if report is not None:
            report["calibration"] = calibrated.details if raw is not None else None
    else:
        from sft.generation import generate

        outputs = generate(model, tokenizer, prompts, inference.batch_size, inference.generation_args)
        for row, output in zip(rows, outputs):
            row["prediction"] = output
    return rows


def predict(config: ExperimentConfig, run: Run) -> Path:
    """Write predictions.jsonl for the test split with the base model (zero-shot) or the trained adapter."""
    with run_logging(run):
        data = prepare_data(config, run.seed)
        model, tokenizer = _load(config, run, adapter_to_load(config, run), labels=data.labels)
        rows = _predict(config, data, model, tokenizer, run.seed)
        return atomic_write_jsonl(run.folder / "predictions.jsonl", rows)


def evaluate(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """Predict and score the test split; write predictions.jsonl and results.json."""
    with run_logging(run):
        started = time.time()
        data = prepare_data(config, run.seed)
        model, tokenizer = _load(config, run, adapter_to_load(config, run), labels=data.labels)
        return _evaluate(config, run, data, model, tokenizer, started)


def run_experiment(config: ExperimentConfig, run: Run) -> dict[str, Any]:
    """Train when shots > 0, then evaluate with the model still in memory, in one process."""
    with run_logging(run):
        started = time.time()
        data = prepare_data(config, run.seed)
        if not config.trains:
            model, tokenizer = _load(config, run, adapter_to_load(config, run), labels=data.labels)
            return _evaluate(config, run, data, model, tokenizer, started)
        model, tokenizer, training = _train(config, run, data)
        if not is_main_process():
            return training
        return _evaluate(config, run, data, model, tokenizer, started, training, time.time() - started)


def _evaluate(
    config: ExperimentConfig,
    run: Run,
    data: ExperimentData,
    model: Any,
    tokenizer: Any,
    started: float,
    training: dict[str, Any] | None = None,
    train_seconds: float | None = None,
) -> dict[str, Any]:
    import numpy as np

    from sft.metrics import MetricInputs, compute_metrics

    began = time.time()
    report: dict[str, Any] = {}
    rows = _predict(config, data, model, tokenizer, run.seed, report)
    inference_seconds = time.time() - began
    atomic_write_jsonl(run.folder / "predictions.jsonl", rows)
    probabilities = (
        np.array([[row["probabilities"][label] for label in data.labels] for row in rows]) if data.labels else None
    )
    inputs = MetricInputs(
        references=[str(row["reference"]) for row in rows],
        predictions=[str(row["prediction"]) for row in rows],
        labels=data.labels,
        probabilities=probabilities,
    )
    if config.dataset.task_type == "multilabel":
        inputs.reference_sets = [row["reference"] for row in rows]
        inputs.prediction_sets = [row["prediction"] for row in rows]
    metrics = compute_metrics(inputs, config.dataset.task_type, config.evaluation)
    results = {
        "experiment": run.name,
        "seed": run.seed,
        "config_hash": config.config_hash(),
        "task_type": config.dataset.task_type,
        "metrics": metrics,
        "n_test": len(rows),
        "n_shots": len(data.shots) if data.shots is not None else 0,
        "labels": data.labels,
        "thresholds": data.thresholds,
        "training": training,
        "calibration": report.get("calibration"),
        "timings": {
            "train_seconds": train_seconds,
            "inference_seconds": inference_seconds,
            "total_seconds": time.time() - started,
        },
        "versions": versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.resolved(),
    }
    atomic_write_json(run.folder / "results.json", results)
    headline = {key: round(value, 4) for key, value in metrics.items() if isinstance(value, float)}
    log.info("Finished %s seed %d: %s", run.name, run.seed, headline)
    return results
