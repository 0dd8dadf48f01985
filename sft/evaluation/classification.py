"""Single-label classification metrics (scikit-learn), over references, predictions and label probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from sft.config import EvaluationConfig
from sft.evaluation.metrics import MetricInputs


def accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score

    return {"accuracy": float(accuracy_score(inputs.references, inputs.predictions))}


def f1(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    return {
        f"f1_{average}": float(
            f1_score(inputs.references, inputs.predictions, labels=inputs.labels, average=average, zero_division=0)
        )
        for average in ("macro", "micro", "weighted")
    }


def precision_recall(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import precision_score, recall_score

    common = {"labels": inputs.labels, "average": "macro", "zero_division": 0}
    return {
        "precision_macro": float(precision_score(inputs.references, inputs.predictions, **common)),
        "recall_macro": float(recall_score(inputs.references, inputs.predictions, **common)),
    }


def mcc(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import matthews_corrcoef

    return {"mcc": float(matthews_corrcoef(inputs.references, inputs.predictions))}


def balanced_accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import balanced_accuracy_score

    return {"balanced_accuracy": float(balanced_accuracy_score(inputs.references, inputs.predictions))}


def ece(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Top-label ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| weighted
    by the bin's share of examples."""
    if inputs.probabilities is None or inputs.labels is None:
        return {}
    probabilities = np.asarray(inputs.probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    chosen = np.asarray(inputs.labels)[probabilities.argmax(axis=1)]
    correct = (chosen == np.asarray(inputs.references)).astype(float)
    # bin b holds confidences in (b/n, (b+1)/n]; confidence 0 joins the first bin
    bins = np.clip(np.ceil(confidence * config.ece_bins).astype(int) - 1, 0, config.ece_bins - 1)
    ece = 0.0
    for b in range(config.ece_bins):
        members = bins == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return {"ece": float(ece)}


def per_class(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = inputs.labels or sorted(set(inputs.references))
    precision, recall, f1_scores, support = precision_recall_fscore_support(
        inputs.references, inputs.predictions, labels=labels, zero_division=0
    )
    return {
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1_scores, support)
        }
    }


def confusion_matrix(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Rows are references, columns predictions, both in label order."""
    from sklearn.metrics import confusion_matrix

    labels = inputs.labels or sorted(set(inputs.references))
    matrix = confusion_matrix(inputs.references, inputs.predictions, labels=labels)
    return {"confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()}}
