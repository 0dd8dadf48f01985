"""Computing a run's metrics: the inputs every metric reads and the loop over the metric names.

Which metrics a run computes is the config's `evaluation.metrics` or, by default, its task's list
(`sft.tasks`); the functions themselves live in `classification`, `generation` and `multilabel` and
are found through `sft.evaluation.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sft.config import EvaluationConfig
from sft.evaluation.registry import METRICS


@dataclass(frozen=True)
class MetricInputs:
    references: list[str]
    predictions: list[str]
    labels: list[str] | None = None  # classification: the label set, in order
    probabilities: np.ndarray | None = None  # classification: (examples, labels)
    reference_sets: list[list[str]] | None = None  # multilabel: the label sets
    prediction_sets: list[list[str]] | None = None


def compute_metrics(inputs: MetricInputs, names: Sequence[str], config: EvaluationConfig) -> dict[str, Any]:
    """Every metric of `names`, merged into one dict."""
    if len(inputs.references) != len(inputs.predictions):
        raise ValueError(f"{len(inputs.references)} references but {len(inputs.predictions)} predictions")
    results: dict[str, Any] = {}
    for name in names:
        results.update(METRICS.get(name)(inputs, config))
    return results
