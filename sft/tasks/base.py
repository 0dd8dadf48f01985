"""What a task is, and what a predictor hands it.

A task (classification, multilabel, generation) owns its labels (how a split's output column is read,
checked and ordered, how examples group by label), its training target, how a predictor's scores
become predictions, its metric inputs, its headline metric and the metrics its report table shows,
and, for a classification head, the head's target and loss (`HeadObjective`). Tasks are plain
module-level objects implementing `Task`; `sft.tasks.task_for` picks one from the config.

A predictor (`sft.predictors`) produces `Scores` for a split; the task turns them into a `Prediction`:
the rows of predictions.jsonl and the details results.json records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sft.evaluation.metrics import MetricInputs, compute_metrics, scalar_keys

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig, InferenceConfig, PromptingConfig
    from sft.data.prepare import ExperimentData


@dataclass(frozen=True)
class Scores:
    """What a predictor produced for the examples of one split, in order."""

    probabilities: np.ndarray | None = None  # (examples, labels): label probabilities
    texts: list[str] | None = None  # generated answers
    row_extras: list[dict[str, Any]] | None = None  # more fields per prediction row (e.g. uncalibrated probabilities)
    details: dict[str, Any] = field(default_factory=dict)  # recorded in results.json (e.g. "calibration")


# A split, or a list of example dicts (an exported model's new inputs) -> the Scores of its examples.
Scorer = Callable[["Dataset"], Scores]


@dataclass(frozen=True)
class Prediction:
    """The rows of predictions.jsonl and what results.json records about how they were made."""

    rows: list[dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)  # "calibration", "thresholds", ...


class HeadObjective(Protocol):
    """How a classification head is trained and read for one task."""

    problem_type: str  # transformers' config.problem_type

    def targets(self, values: Sequence[Any], labels: list[str]) -> np.ndarray: ...

    def balanced_weights(self, targets: np.ndarray, labels: list[str]) -> np.ndarray:
        """Loss weights per label from the label counts of `targets` (training.class_weights: balanced)."""

    def loss(self, weights: Any) -> Any:
        """The torch loss module over (logits, targets), weighted per label by `weights` (a tensor or None)."""

    def probabilities(self, logits: Any) -> Any:
        """Label probabilities from the head's logits (a torch tensor)."""


class Task(Protocol):
    name: str
    headline_metric: str  # the metric of the report's pivot and plot
    table_metrics: tuple[str, ...]  # the report table's columns, in order
    default_metrics: tuple[str, ...]  # computed when evaluation.metrics is not set
    report_plots: frozenset[str]  # per-experiment plots that apply ("confusion", "reliability")
    generative_predictor: str  # the predictor of the generative mode (sft.predictors)
    head: HeadObjective | None  # a classification head's objective; None: no head mode (the checks refuse one)
    structured_output: bool  # answers are JSON objects under a schema (the structured section's schema settings)

    def tunes_thresholds(self, inference: InferenceConfig) -> bool:
        """Whether predicting tunes decision thresholds on a validation split (so the experiment reads one
        even when training does not evaluate)."""

    def reads_train_split(self, config: ExperimentConfig) -> bool:
        """Whether the task itself needs the training split (a structured task infers its schema from the
        training targets), beyond what shots, in-context examples and calibration need."""

    def output_schema(self, config: ExperimentConfig, splits: Sequence[Dataset]) -> dict[str, Any] | None:
        """The JSON Schema every answer fits (a structured task: configured or inferred from the first of
        `splits`, read by `read_split`); None for a task without one."""

    def read_split(self, split: Dataset, column: str, labels: list[str] | None) -> Dataset:
        """The split with its output column as the task keeps it."""

    def label_problems(
        self, splits: dict[str, Dataset], names: dict[str, str], config: ExperimentConfig, complete: bool
    ) -> list[str]:
        """Problems with the labels of the splits (config key -> split), before anything runs."""

    def label_set(self, splits: Sequence[Dataset], column: str, configured: list[str] | None) -> list[str] | None:
        """The labels in order: `dataset.labels`, else sorted from the splits (read by `read_split`)."""

    def example_groups(self, values: Sequence[Any], labels: list[str] | None) -> list[np.ndarray]:
        """Indices of the examples to draw in-context examples from: a group per label, or one in all."""

    def target_text(self, value: Any, prompting: PromptingConfig) -> str:
        """The answer a generative model is trained to give for an output value."""

    def predict(self, config: ExperimentConfig, data: ExperimentData, score: Scorer) -> Prediction:
        """Predictions for the test split from the predictor's `score`."""

    def answers(
        self, scores: Scores, labels: list[str] | None, thresholds: dict[str, float] | None
    ) -> list[dict[str, Any]]:
        """The prediction of every scored input ({"prediction": ..., "probabilities": {label: p}} for a
        labelled task): what `predict` writes per row, and what an exported model returns for new inputs.
        `thresholds` are a multilabel task's label thresholds (None elsewhere)."""

    def metric_inputs(self, rows: list[dict[str, Any]], labels: list[str] | None) -> MetricInputs:
        """What the metric functions read, from the prediction rows."""


def example_rows(
    split: Dataset, prompting: PromptingConfig, reference: Callable[[Any], Any], cluster_column: str | None = None
) -> list[dict[str, Any]]:
    """The start of every prediction row: the input columns, the cluster column when one is set (the
    report resamples whole clusters) and the reference answer."""
    columns = [*prompting.input_columns, *([cluster_column] if cluster_column else [])]
    return [
        {
            **{column: example[column] for column in dict.fromkeys(columns)},
            "reference": reference(example[prompting.output_column]),
        }
        for example in split
    ]


def probabilities_of(scores: Scores) -> np.ndarray:
    """The label probabilities of `scores`, which every predictor of a labelled task gives."""
    if scores.probabilities is None:
        raise ValueError("a labelled task needs the label probabilities of its predictor's scores; it gave none")
    return scores.probabilities


def label_probabilities(labels: list[str], probabilities: np.ndarray) -> list[dict[str, float]]:
    """One {label: probability} dict per example."""
    return [dict(zip(labels, row)) for row in probabilities.tolist()]


def labelled_metric_inputs(rows: list[dict[str, Any]], labels: list[str], **sets: Any) -> MetricInputs:
    """Metric inputs of a labelled task: references and predictions as text, the label probabilities in
    label order, and any `sets` (a multilabel task's label sets)."""
    return MetricInputs(
        references=[str(row["reference"]) for row in rows],
        predictions=[str(row["prediction"]) for row in rows],
        labels=labels,
        probabilities=_probability_matrix(rows, labels),
        **sets,
    )


# -- metrics of a task -----------------------------------------------------------------------------------

# `training.metric` naming the validation loss instead of one of the task's metrics (lower is better)
VALIDATION_LOSS = "loss"


def metric_names(config: ExperimentConfig, task: Task) -> list[str]:
    """The metrics a run computes: `evaluation.metrics`, else the task's default list."""
    return list(config.evaluation.metrics or task.default_metrics)


def task_metrics(config: ExperimentConfig, task: Task, prediction: Prediction, labels: list[str] | None) -> dict:
    """The task's metrics of a prediction: what the final evaluation and every evaluation during training
    compute, by the same code."""
    return compute_metrics(task.metric_inputs(prediction.rows, labels), metric_names(config, task), config.evaluation)


def selection_metric(config: ExperimentConfig, task: Task) -> str:
    """The result key that picks the best adapter during training: `training.metric` or the headline."""
    chosen = config.training.metric if config.training is not None else None
    return chosen or task.headline_metric


def selection_problems(config: ExperimentConfig, task: Task) -> list[str]:
    """`training.metric` must be a single-number result of the task's metrics, or the validation loss."""
    if config.training is None or config.training.metric is None:
        return []
    known = [*scalar_keys(metric_names(config, task)), VALIDATION_LOSS]
    if config.training.metric in known:
        return []
    return [
        f"training.metric: {config.training.metric!r} is not a result of the {task.name} task's metrics; "
        f"choose from {', '.join(known)} "
        "(or add its metric to evaluation.metrics)"
    ]


def _probability_matrix(rows: list[dict[str, Any]], labels: list[str]) -> np.ndarray:
    """(examples, labels) from each row's {label: probability}; itemgetter makes it 3x faster than a
    nested comprehension, which the report notices when it rereads a grid's predictions."""
    if not labels:
        return np.zeros((len(rows), 0))
    pick = itemgetter(*labels)
    return np.array([pick(row["probabilities"]) for row in rows], dtype=float).reshape(len(rows), len(labels))
