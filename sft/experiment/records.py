"""What a finished run records in results.json, and the software it ran with."""

from __future__ import annotations

import contextlib
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from sft.config import ExperimentConfig
from sft.results.layout import Run
from sft.tasks.base import Prediction

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
