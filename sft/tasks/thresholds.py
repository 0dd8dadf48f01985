"""Multi-label thresholds: from independent label probabilities to label sets.

`inference.thresholds`: "global" picks one threshold maximizing micro-F1 on the validation split,
"per_label" one per label maximizing that label's F1; a number is used as is. A label is predicted
when its probability is >= its threshold. Candidates are the observed validation probabilities, so
the choice is exact, not a grid approximation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sft.data.labels import binarize

if TYPE_CHECKING:
    from sft.config import ExperimentConfig
    from sft.data.prepare import ExperimentData
    from sft.tasks.base import Scorer

log = logging.getLogger(__name__)

# Used when thresholds cannot be tuned (no validation split).
DEFAULT_THRESHOLD = 0.5


def _best_cut(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximizing F1 of `scores >= threshold` against the 0/1 `truth`.

    Every distinct score is a candidate: predicting the top-n scores gives F1 = 2 TP / (n + positives).
    Ties in F1 go to the highest threshold (the fewest predicted labels).
    """
    scores, truth = np.asarray(scores, dtype=float).ravel(), np.asarray(truth).ravel()
    positives = truth.sum()
    if positives == 0 or len(scores) == 0:
        return float(np.inf if len(scores) == 0 else scores.max() + 1.0), 0.0
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_truth = scores[order], truth[order]
    # only the last position of each run of equal scores is a valid cut
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    true_positives = np.cumsum(sorted_truth)[ends]
    predicted = ends + 1
    f1 = 2 * true_positives / (predicted + positives)
    best = int(np.argmax(f1))  # argmax takes the first maximum: the highest threshold
    return float(sorted_scores[ends[best]]), float(f1[best])


def tune_thresholds(probabilities: np.ndarray, truth: np.ndarray, mode: str) -> np.ndarray:
    """One threshold per label: the same micro-F1-best one for all ("global") or each label's own F1-best
    one ("per_label")."""
    probabilities, truth = np.asarray(probabilities, dtype=float), np.asarray(truth)
    if mode == "global":
        threshold, _ = _best_cut(probabilities, truth)
        return np.full(probabilities.shape[1], threshold)
    if mode == "per_label":
        return np.array([_best_cut(probabilities[:, k], truth[:, k])[0] for k in range(probabilities.shape[1])])
    raise ValueError(f"unknown threshold mode {mode!r}; choose 'global', 'per_label' or a number")


def decide(probabilities: np.ndarray, thresholds: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """The predicted label set of every example, in label order."""
    chosen = np.asarray(probabilities) >= np.asarray(thresholds)[None, :]
    return [[label for label, keep in zip(labels, row) if keep] for row in chosen]


def thresholds_for(config: ExperimentConfig, data: ExperimentData, score: Scorer) -> np.ndarray:
    """The thresholds of `inference.thresholds`, tuned on the validation split scored by `score`."""
    mode, labels = config.inference.thresholds, data.labels
    assert labels is not None
    if not isinstance(mode, str):
        return np.full(len(labels), float(mode))
    validation = data.validation
    if validation is None:
        log.warning(
            "No dataset.validation_split to tune %s thresholds on; using %.2f for every label.",
            mode,
            DEFAULT_THRESHOLD,
        )
        return np.full(len(labels), DEFAULT_THRESHOLD)
    limit = config.inference.threshold_examples
    if limit is not None and limit < len(validation):
        validation = validation.shuffle(seed=0).select(range(limit))
    truth = binarize(validation[config.prompting.output_column], labels)
    thresholds = tune_thresholds(score(validation).probabilities, truth, mode)
    log.info("Tuned %s thresholds on %d validation examples: %s", mode, len(validation), thresholds.round(4))
    return thresholds
