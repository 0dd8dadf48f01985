"""Multi-label metrics over label sets, as (examples, labels) indicator matrices (scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sft.config import EvaluationConfig
from sft.evaluation.metrics import MetricInputs


def binarize(label_sets: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """(examples, labels) 0/1 matrix; labels outside `labels` are ignored."""
    position = {label: index for index, label in enumerate(labels)}
    matrix = np.zeros((len(label_sets), len(labels)), dtype=int)
    for row, names in enumerate(label_sets):
        for name in names:
            if name in position:
                matrix[row, position[name]] = 1
    return matrix


def _indicators(inputs: MetricInputs) -> tuple[np.ndarray, np.ndarray]:
    """(reference, prediction) 0/1 matrices of shape (examples, labels)."""
    if inputs.reference_sets is None or inputs.prediction_sets is None or inputs.labels is None:
        raise ValueError("multilabel metrics need reference_sets, prediction_sets and labels")
    return binarize(inputs.reference_sets, inputs.labels), binarize(inputs.prediction_sets, inputs.labels)


def multilabel_f1(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """F1 over all (example, label) decisions (micro), averaged over labels (macro) or over examples
    (samples; an example with no reference and no predicted label counts as 1)."""
    from sklearn.metrics import f1_score

    truth, predicted = _indicators(inputs)
    return {
        f"f1_{average}": float(f1_score(truth, predicted, average=average, zero_division=int(average == "samples")))
        for average in ("micro", "macro", "samples")
    }


def subset_accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Share of examples whose predicted label set is exactly the reference set."""
    from sklearn.metrics import accuracy_score

    truth, predicted = _indicators(inputs)
    return {"subset_accuracy": float(accuracy_score(truth, predicted))}


def hamming_loss(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Share of wrong (example, label) decisions."""
    from sklearn.metrics import hamming_loss

    truth, predicted = _indicators(inputs)
    return {"hamming_loss": float(hamming_loss(truth, predicted))}


def per_label(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Precision, recall, F1 and support of every label as its own binary decision."""
    from sklearn.metrics import precision_recall_fscore_support

    truth, predicted = _indicators(inputs)
    precision, recall, f1_scores, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    return {
        "per_label": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for label, p, r, f, n in zip(inputs.labels or [], precision, recall, f1_scores, support)
        }
    }
