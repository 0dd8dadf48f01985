"""The metric registry, the inputs every metric reads, and computing a run's metrics.

`METRICS`: name -> function(MetricInputs, EvaluationConfig) -> {result key: value}. Each metric
declares, where it is registered, the result keys it produces and whether higher is better for them;
the report reads the direction from here (no import of the implementation, no guess from the name).
Built-in metrics live in `classification`, `generation`, `multilabel` and `structured` and are imported on first
use. Add one with `@register_metric("name", outputs=("key",), higher_is_better=True)` and list it in
`evaluation.metrics`. Which metrics a run computes is the config's `evaluation.metrics` or, by
default, its task's list (`sft.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sft.config import EvaluationConfig
from sft.registry import Registry

METRICS = Registry("metric")

# name -> (module, result keys, higher is better); the function has the metric's name.
_BUILT_IN = {
    "accuracy": ("classification", ("accuracy",), True),
    "f1": ("classification", ("f1_macro", "f1_micro", "f1_weighted"), True),
    "precision_recall": ("classification", ("precision_macro", "recall_macro"), True),
    "mcc": ("classification", ("mcc",), True),
    "balanced_accuracy": ("classification", ("balanced_accuracy",), True),
    "ece": ("classification", ("ece",), False),
    "per_class": ("classification", ("per_class",), True),
    "confusion_matrix": ("classification", ("confusion_matrix",), True),
    "bleu": ("generation", ("bleu",), True),
    "chrf": ("generation", ("chrf",), True),
    "rouge": ("generation", ("rouge1", "rouge2", "rougeL"), True),
    "exact_match": ("generation", ("exact_match",), True),
    "multilabel_f1": ("multilabel", ("f1_micro", "f1_macro", "f1_samples"), True),
    "subset_accuracy": ("multilabel", ("subset_accuracy",), True),
    "hamming_loss": ("multilabel", ("hamming_loss",), False),
    "per_label": ("multilabel", ("per_label",), True),
    "valid": ("structured", ("valid",), True),
    "field_f1": ("structured", ("field_f1_micro", "field_f1_macro"), True),
    "per_field": ("structured", ("per_field",), True),
}
# Built-in metrics whose result is a table (per label, a matrix), not one number to compare.
_STRUCTURED = {"per_class", "confusion_matrix", "per_label", "per_field"}
for _name, (_module, _outputs, _higher) in _BUILT_IN.items():
    METRICS.add(
        _name,
        f"sft.evaluation.{_module}:{_name}",
        outputs=_outputs,
        higher_is_better=_higher,
        scalar=_name not in _STRUCTURED,
    )


def register_metric(
    name: str, outputs: tuple[str, ...] | None = None, higher_is_better: bool = True
) -> Callable[[Callable], Callable]:
    """Register a metric function; `outputs` are the result keys it returns (default: its name)."""
    return METRICS.register(name, outputs=tuple(outputs or (name,)), higher_is_better=higher_is_better)


def scalar_keys(names: Sequence[str]) -> list[str]:
    """The single-number result keys the metrics `names` produce, in order: what can pick a best model.
    Unknown names are left out (the validators report them)."""
    keys: list[str] = []
    for name in names:
        info: dict[str, Any] = METRICS.info(name) if name in METRICS else {}
        if info.get("scalar", True):
            keys += [key for key in info.get("outputs", ()) if key not in keys]
    return keys


def higher_is_better(column: str) -> bool:
    """Whether a larger value of a result key is better, as its metric declared. Nested keys
    (`per_class.joy.f1`) take the direction of their metric's top-level key; a key no registered metric
    produces (results of a metric since removed) counts as higher-is-better."""
    top = column.split(".", 1)[0]
    for name in METRICS:
        info: dict[str, Any] = METRICS.info(name)
        if top in info.get("outputs", ()):
            return bool(info.get("higher_is_better", True))
    return True


@dataclass(frozen=True)
class MetricInputs:
    references: list[str]
    predictions: list[str]
    labels: list[str] | None = None  # classification: the label set, in order
    probabilities: np.ndarray | None = None  # classification: (examples, labels)
    reference_sets: list[list[str]] | None = None  # multilabel: the label sets
    prediction_sets: list[list[str]] | None = None
    valid: list[bool] | None = None  # structured: whether each answer parsed and fit the schema
    fields: list[str] | None = None  # structured: the schema's fields (key paths), in order
    field_kinds: list[str] | None = None  # structured: each field's kind (category, number, text, set)
    # structured: (examples, 3 * fields): true positives of every field, then false positives, then false negatives
    field_counts: np.ndarray | None = None


def compute_metrics(inputs: MetricInputs, names: Sequence[str], config: EvaluationConfig) -> dict[str, Any]:
    """Every metric of `names`, merged into one dict."""
    if len(inputs.references) != len(inputs.predictions):
        raise ValueError(f"{len(inputs.references)} references but {len(inputs.predictions)} predictions")
    results: dict[str, Any] = {}
    for name in names:
        results.update(METRICS.get(name)(inputs, config))
    return results
