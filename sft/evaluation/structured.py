"""Structured-output metrics: the share of valid answers and F1 over the schema's fields, from the
per-example field counts the structured task writes into each prediction row (`sft.tasks.structured`).

A field's F1 is 2 tp / (2 tp + fp + fn) over its counts summed over examples: for a category or a
number (one item per example) it is the accuracy when every answer is valid, for text the mean token
F1, for a set (a list) the F1 over its items. `field_f1_macro` averages the fields' F1, `field_f1_micro`
pools every field's counts. Exact match of the whole object is generation's `exact_match` over the
canonical serializations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sft.config import EvaluationConfig
from sft.evaluation.metrics import MetricInputs


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def field_totals(inputs: MetricInputs) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(fields, true positives, false positives, false negatives) per field, summed over examples."""
    if inputs.fields is None or inputs.field_counts is None:
        raise ValueError("structured metrics need the field counts of a structured task's predictions")
    n = len(inputs.fields)
    sums = np.asarray(inputs.field_counts, dtype=float).reshape(-1, 3 * n).sum(axis=0)
    return inputs.fields, sums[:n], sums[n : 2 * n], sums[2 * n :]


def valid(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Share of answers that parse as JSON and fit the schema."""
    flags = inputs.valid or []
    return {"valid": float(np.mean(flags)) if flags else 0.0}


def field_f1(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    _, tp, fp, fn = field_totals(inputs)
    per_field = _divide(2 * tp, 2 * tp + fp + fn)
    return {
        "field_f1_micro": float(_divide(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())),
        "field_f1_macro": float(per_field.mean()) if len(per_field) else 0.0,
    }


def per_field(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Per field: its kind, precision, recall and F1; accuracy for categories and numbers (right answers
    over the examples whose reference has the field), mean token F1 for text."""
    fields, tp, fp, fn = field_totals(inputs)
    kinds = inputs.field_kinds or ["category"] * len(fields)
    found: dict[str, Any] = {}
    for index, (field, kind) in enumerate(zip(fields, kinds)):
        t, p, n = float(tp[index]), float(fp[index]), float(fn[index])
        scores: dict[str, Any] = {
            "kind": kind,
            "precision": float(_divide(np.array(t), np.array(t + p))),
            "recall": float(_divide(np.array(t), np.array(t + n))),
            "f1": float(_divide(np.array(2 * t), np.array(2 * t + p + n))),
        }
        if kind in ("category", "number"):
            scores["accuracy"] = scores["recall"]
        if kind == "text":
            scores["token_f1"] = scores["f1"]
        found[field] = scores
    return {"per_field": found}
