"""Single-label classification: one label per example, the argmax of the label probabilities.

Labels are read as strings (a ClassLabel id becomes its name); the label set is `dataset.labels` or
every label of the test and training splits, sorted. A generative model is trained to answer the
label itself; a classification head is trained with (optionally weighted) cross-entropy and read
with a softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.evaluation.metrics import MetricInputs
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
from sft.tasks.labels import as_text, blank_label_problems, label_set_problems, members_by_label

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig, InferenceConfig, PromptingConfig
    from sft.data.prepare import ExperimentData


def label_strings(split: Dataset, column: str) -> list[str]:
    """The labels of a split as strings (ClassLabel ids become their names)."""
    from datasets import ClassLabel

    feature = split.features.get(column)
    values = split[column]
    if isinstance(feature, ClassLabel):
        return [feature.int2str(int(value)) for value in values]
    return [str(value) for value in values]


class SingleLabelHead:
    """A head with one logit per label: cross-entropy in training, softmax when reading."""

    problem_type = "single_label_classification"

    def targets(self, values: Sequence[Any], labels: list[str]) -> np.ndarray:
        position = {label: index for index, label in enumerate(labels)}
        return np.array([position[str(value)] for value in values], dtype=np.int64)

    def balanced_weights(self, targets: np.ndarray, labels: list[str]) -> np.ndarray:
        """n / (K * n_label): every label weighs the same in the loss."""
        counts = np.bincount(targets, minlength=len(labels))
        return (len(targets) / (len(labels) * np.maximum(counts, 1))).astype(np.float32)

    def loss(self, weights: Any) -> Any:
        import torch

        return torch.nn.CrossEntropyLoss(weight=weights)

    def probabilities(self, logits: Any) -> Any:
        import torch

        return torch.softmax(logits, dim=-1)


class Classification:
    name = "classification"
    headline_metric = "f1_macro"
    table_metrics: tuple[str, ...] = ("accuracy", "f1_macro", "f1_micro", "mcc", "ece")
    default_metrics: tuple[str, ...] = (
        "accuracy", "f1", "precision_recall", "mcc", "balanced_accuracy", "ece", "per_class", "confusion_matrix",
    )  # fmt: skip
    report_plots = frozenset({"confusion", "reliability"})
    generative_predictor = "label_scoring"
    head: HeadObjective | None = SingleLabelHead()

    structured_output = False

    def tunes_thresholds(self, inference: InferenceConfig) -> bool:
        return False  # the argmax decides

    def reads_train_split(self, config: ExperimentConfig) -> bool:
        return False

    def output_schema(self, config: ExperimentConfig, splits: Sequence[Dataset]) -> None:
        return None

    def read_split(self, split: Dataset, column: str, labels: list[str] | None) -> Dataset:
        from datasets import Value

        if split.features.get(column) == Value("string"):
            return split
        values = label_strings(split, column)
        return split.remove_columns(column).add_column(column, values)

    def label_problems(
        self, splits: dict[str, Dataset], names: dict[str, str], config: ExperimentConfig, complete: bool
    ) -> list[str]:
        column = config.prompting.output_column
        blank = blank_label_problems({key: split[column] for key, split in splits.items()}, names, column)
        if blank:  # the label set below would count them as labels
            return blank
        seen = {key: set(label_strings(split, column)) for key, split in splits.items()}
        return label_set_problems(seen, names, config.dataset.labels, "dataset.train_split", complete)

    def label_set(self, splits: Sequence[Dataset], column: str, configured: list[str] | None) -> list[str]:
        present = set().union(*(set(split[column]) for split in splits))
        return list(configured) if configured else sorted(present)

    def example_groups(self, values: Sequence[Any], labels: list[str] | None) -> list[np.ndarray]:
        return list(members_by_label(values, labels or []).values())

    def target_text(self, value: Any, prompting: PromptingConfig) -> str:
        return as_text(value)

    def predict(self, config: ExperimentConfig, data: ExperimentData, score: Scorer) -> Prediction:
        scores = score(data.test)
        rows = example_rows(data.test, config.prompting, lambda value: value, config.evaluation.cluster_column)
        for index, (row, answer) in enumerate(zip(rows, self.answers(scores, data.labels, None))):
            row.update(answer)
            if scores.row_extras is not None:
                row.update(scores.row_extras[index])
        return Prediction(rows, dict(scores.details))

    def answers(
        self, scores: Scores, labels: list[str] | None, thresholds: dict[str, float] | None
    ) -> list[dict[str, Any]]:
        """The argmax label and the probability of every label."""
        return [
            {"prediction": max(labels or [], key=probs.__getitem__), "probabilities": probs}
            for probs in label_probabilities(labels or [], probabilities_of(scores))
        ]

    def metric_inputs(self, rows: list[dict[str, Any]], labels: list[str] | None) -> MetricInputs:
        return labelled_metric_inputs(rows, labels or [])


CLASSIFICATION = Classification()
