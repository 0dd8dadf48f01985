"""Multi-label classification: label lists in the data, an independent probability per label, and
thresholds tuned on the validation split (below) that turn those probabilities into label sets.

Data: the output column holds a list of label names; `read_split` keeps each list as strings in label
order without duplicates (sorted by name when no label list is given, which is then the label order
too), so the generative training target is `prompting.label_separator.join(labels)` (e.g. "joy,
neutral"). Label-set scoring (`sft.scoring.label_sets`) or a head's sigmoids give the probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.config import ConfigError
from sft.evaluation.metrics import MetricInputs
from sft.evaluation.multilabel import binarize
from sft.tasks.base import (
    HeadObjective,
    Prediction,
    Scorer,
    Scores,
    example_rows,
    label_probabilities,
    labelled_metric_inputs,
    probabilities_of,
)
from sft.tasks.labels import blank_label_problems, label_set_problems, members_by_label

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig, InferenceConfig, PromptingConfig
    from sft.data.prepare import ExperimentData

log = logging.getLogger(__name__)


def label_lists(split: Dataset, column: str) -> list[list[str]]:
    """The label lists of a split, as strings."""
    return [[str(label) for label in value] for value in split[column]]


def label_list_problems(split: Dataset, column: str, split_name: str) -> list[str]:
    """The output column of a multilabel dataset must hold lists of labels."""
    values = split[column]
    bad = next((value for value in values if not isinstance(value, list) and value is not None), None)
    if values and bad is not None:
        return [
            f"prompting.output_column: multilabel needs a list of labels in column {column!r}, but split "
            f'{split_name!r} has {bad!r}; store e.g. ["joy", "neutral"] (or use task_type classification)'
        ]
    return []


class MultiLabelHead:
    """A head with an independent logit per label: BCE in training, sigmoids when reading."""

    problem_type = "multi_label_classification"

    def targets(self, values: Sequence[Any], labels: list[str]) -> np.ndarray:
        return binarize(values, labels).astype(np.float32)

    def balanced_weights(self, targets: np.ndarray, labels: list[str]) -> np.ndarray:
        """n_negative / n_positive per label, as BCE's pos_weight."""
        positives = targets.sum(axis=0)
        return ((len(targets) - positives) / np.maximum(positives, 1)).astype(np.float32)

    def loss(self, weights: Any) -> Any:
        import torch

        return torch.nn.BCEWithLogitsLoss(pos_weight=weights)

    def probabilities(self, logits: Any) -> Any:
        import torch

        return torch.sigmoid(logits)


class Multilabel:
    name = "multilabel"
    headline_metric = "f1_macro"
    table_metrics: tuple[str, ...] = ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "hamming_loss")
    default_metrics: tuple[str, ...] = ("multilabel_f1", "subset_accuracy", "hamming_loss", "per_label")
    report_plots: frozenset[str] = frozenset()
    generative_predictor = "label_set_scoring"
    head: HeadObjective | None = MultiLabelHead()

    structured_output = False

    def tunes_thresholds(self, inference: InferenceConfig) -> bool:
        """'global' and 'per_label' are tuned on a validation split; a number is fixed."""
        return isinstance(inference.thresholds, str)

    def reads_train_split(self, config: ExperimentConfig) -> bool:
        return False

    def output_schema(self, config: ExperimentConfig, splits: Sequence[Dataset]) -> None:
        return None

    def read_split(self, split: Dataset, column: str, labels: list[str] | None) -> Dataset:
        def order(value: list) -> list[str]:
            names = {str(label) for label in value}
            if labels is None:
                return sorted(names)
            return [label for label in labels if label in names]

        values = [order(value) for value in split[column]]
        return split.remove_columns(column).add_column(column, values)

    def label_problems(
        self, splits: dict[str, Dataset], names: dict[str, str], config: ExperimentConfig, complete: bool
    ) -> list[str]:
        column = config.prompting.output_column
        problems = [
            problem for key, split in splits.items() for problem in label_list_problems(split, column, names[key])
        ]
        problems += blank_label_problems({key: split[column] for key, split in splits.items()}, names, column)
        if problems:  # the label checks below need lists
            return problems
        seen = {key: set().union(*label_lists(split, column)) for key, split in splits.items()}
        return label_set_problems(seen, names, config.dataset.labels, "dataset.train_split", complete)

    def label_set(self, splits: Sequence[Dataset], column: str, configured: list[str] | None) -> list[str]:
        present = set().union(*(label for split in splits for label in split[column]))
        return list(configured) if configured else sorted(present)

    def example_groups(self, values: Sequence[Any], labels: list[str] | None) -> list[np.ndarray]:
        return list(members_by_label(values, labels or []).values())

    def target_text(self, value: Any, prompting: PromptingConfig) -> str:
        return prompting.label_separator.join(value)

    def predict(self, config: ExperimentConfig, data: ExperimentData, score: Scorer) -> Prediction:
        """Probabilities per label and the thresholded label set of every test example; the thresholds
        are tuned on the validation split with the same `score`."""
        labels = data.labels or []
        cuts, source = thresholds_for(config, data, score)
        thresholds = dict(zip(labels, cuts.tolist()))
        scores = score(data.test)
        rows = example_rows(data.test, config.prompting, list, config.evaluation.cluster_column)
        for row, answer in zip(rows, self.answers(scores, labels, thresholds)):
            row.update(answer)
        return Prediction(rows, {**scores.details, "thresholds": thresholds, "threshold_source": source})

    def answers(
        self, scores: Scores, labels: list[str] | None, thresholds: dict[str, float] | None
    ) -> list[dict[str, Any]]:
        """The label set over the thresholds (one per label: a run records every label's, tuned or fixed)
        and the probability of every label."""
        labels = labels or []
        missing = [label for label in labels if label not in (thresholds or {})]
        if missing:
            raise ValueError(f"no threshold for the labels {missing}: a multilabel prediction needs one per label")
        cuts = np.array([(thresholds or {})[label] for label in labels])
        chosen = decide(probabilities_of(scores), cuts, labels)
        probabilities = label_probabilities(labels, probabilities_of(scores))
        return [{"prediction": labels_in, "probabilities": probs} for labels_in, probs in zip(chosen, probabilities)]

    def metric_inputs(self, rows: list[dict[str, Any]], labels: list[str] | None) -> MetricInputs:
        reference_sets = [row["reference"] for row in rows]
        prediction_sets = [row["prediction"] for row in rows]
        return labelled_metric_inputs(
            rows, labels or [], reference_sets=reference_sets, prediction_sets=prediction_sets
        )


MULTILABEL = Multilabel()


# -- thresholds ------------------------------------------------------------------------------------------


# The validation subset thresholds are tuned on (inference.threshold_examples) is the same for every seed.
THRESHOLD_SUBSET_SEED = 0


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


def thresholds_for(config: ExperimentConfig, data: ExperimentData, score: Scorer) -> tuple[np.ndarray, Any]:
    """The thresholds of `inference.thresholds` and where they came from: "fixed", or the validation split
    and how many of its examples `score` tuned them on."""
    mode, labels = config.inference.thresholds, data.labels
    assert labels is not None
    if not isinstance(mode, str):
        return np.full(len(labels), float(mode)), "fixed"
    validation = data.validation
    if validation is None:  # prepare_data refuses this; kept for callers that build ExperimentData by hand
        raise ConfigError(
            [f"dataset.validation_split: inference.thresholds {mode!r} need a validation split to be tuned on"]
        )
    available, limit = len(validation), config.inference.threshold_examples
    if limit is not None and limit < available:
        validation = validation.shuffle(seed=THRESHOLD_SUBSET_SEED).select(range(limit))
    truth = binarize(validation[config.prompting.output_column], labels)
    thresholds = tune_thresholds(probabilities_of(score(validation)), truth, mode)
    split = data.validation_name or config.dataset.validation_split
    log.info(
        "Tuned %s thresholds on %d of the %d examples of split %r: %s",
        mode,
        len(validation),
        available,
        split,
        thresholds.round(4),
    )
    source = {
        "split": split,
        "examples": len(validation),
        "split_examples": available,
        "chosen_by": "config" if split == config.dataset.validation_split else "split name",
    }
    return thresholds, source
