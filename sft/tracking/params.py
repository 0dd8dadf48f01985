"""What a run logs, from its config and its results.json: the settings as params (flattened dotted keys: those
the user set, which the config hash covers, and those that vary across the grid), the final metrics, and the
model selection's learning curve and training loss as step metrics. Pure functions: no tracker is touched."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from sft.config import ExperimentConfig
from sft.config.parsing import NO_DEFAULT, flatten, schema_default
from sft.results.run_record import ResultsRecord

MAX_PARAM_VALUE = 6000  # MLflow refuses longer param values
_METRIC_CHARACTERS = re.compile(r"[^A-Za-z0-9_\-. /]")  # the characters MLflow allows in a metric key


def varying_keys(configs: Iterable[ExperimentConfig]) -> list[str]:
    """The dotted setting keys whose value differs between the grid's experiments, in config order. A key that
    only some experiments have (inside a section the others leave out, such as `lora`) varies where it is set
    to something other than its default."""
    flats = [flatten(config.resolved()) for config in configs]
    keys = dict.fromkeys(key for flat in flats for key in flat)

    def varies(key: str) -> bool:
        present = [flat[key] for flat in flats if key in flat]
        if len({json.dumps(value, sort_keys=True, default=str) for value in present}) > 1:
            return True
        if len(present) == len(flats):
            return False
        default = schema_default(key)
        return default is NO_DEFAULT or any(value != default for value in present)

    return [key for key in keys if varies(key)]


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:MAX_PARAM_VALUE]


def setting_params(config: ExperimentConfig, varying: Iterable[str] = ()) -> dict[str, str]:
    """The settings a child logs: every one that differs from the schema's defaults (what the config hash
    covers), and every one that varies across the grid even where it has its default value, so runs compare."""
    chosen = flatten(config.hashed_settings())
    resolved = flatten(config.resolved())
    chosen.update({key: resolved[key] for key in varying if key in resolved})
    return {key: param_value(value) for key, value in chosen.items() if key}


def metric_key(name: str) -> str:
    return _METRIC_CHARACTERS.sub("_", name)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def final_metrics(results: ResultsRecord) -> dict[str, float]:
    """The run's metrics (numeric leaves, nested ones dotted), its timings and training statistics."""
    found: dict[str, Any] = dict(flatten(results.metrics))
    found.update({f"timings.{key}": value for key, value in results.timings.model_dump().items()})
    training = results.training or {}
    found.update({f"training.{key}": training.get(key) for key in ("train_loss", "train_steps", "train_examples")})
    found.update({"n_test": results.n_test, "n_shots": results.n_shots})
    return {metric_key(key): number for key, value in found.items() if (number := _number(value)) is not None}


def step_metrics(results: ResultsRecord) -> list[tuple[str, float, int]]:
    """(key, value, step): the model selection's learning curve (validation loss and metrics, the mean
    training loss since the evaluation before) and the final training loss at the last step."""
    training = results.training or {}
    steps: list[tuple[str, float, int]] = []
    selection = training.get("selection")
    curve = selection.get("learning_curve") if isinstance(selection, dict) else None
    for point in curve if isinstance(curve, list) else []:
        step = point.get("step")
        if not isinstance(step, int):
            continue
        values = {"train_loss": point.get("train_loss"), "validation_loss": point.get("validation_loss")}
        values.update({f"validation.{key}": value for key, value in (point.get("metrics") or {}).items()})
        steps += [
            (metric_key(key), number, step) for key, value in values.items() if (number := _number(value)) is not None
        ]
    loss, last = _number(training.get("train_loss")), training.get("train_steps")
    if (
        loss is not None
        and isinstance(last, int)
        and not any(key == "train_loss" and step == last for key, _, step in steps)
    ):
        steps.append(("train_loss", loss, last))
    return steps
