"""Generation: free-text answers compared with the reference by BLEU, chrF, ROUGE and exact match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.evaluation.metrics import MetricInputs
from sft.tasks.base import HeadObjective, Prediction, Scorer, Scores, example_rows
from sft.tasks.labels import as_text

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig, InferenceConfig, PromptingConfig
    from sft.data.prepare import ExperimentData


class Generation:
    name = "generation"
    headline_metric = "bleu"
    table_metrics: tuple[str, ...] = ("bleu", "chrf", "rougeL", "exact_match")
    default_metrics: tuple[str, ...] = ("bleu", "chrf", "rouge", "exact_match")
    report_plots: frozenset[str] = frozenset()
    generative_predictor = "generation"
    head: HeadObjective | None = None  # a classification head cannot generate (the config checks say so)

    structured_output = False

    def tunes_thresholds(self, inference: InferenceConfig) -> bool:
        return False

    def reads_train_split(self, config: ExperimentConfig) -> bool:
        return False

    def output_schema(self, config: ExperimentConfig, splits: Sequence[Dataset]) -> None:
        return None

    def read_split(self, split: Dataset, column: str, labels: list[str] | None) -> Dataset:
        return split

    def label_problems(
        self, splits: dict[str, Dataset], names: dict[str, str], config: ExperimentConfig, complete: bool
    ) -> list[str]:
        return []

    def label_set(self, splits: Sequence[Dataset], column: str, configured: list[str] | None) -> None:
        return None

    def example_groups(self, values: Sequence[Any], labels: list[str] | None) -> list[np.ndarray]:
        return [np.arange(len(values))]

    def target_text(self, value: Any, prompting: PromptingConfig) -> str:
        return as_text(value)

    def predict(self, config: ExperimentConfig, data: ExperimentData, score: Scorer) -> Prediction:
        scores = score(data.test)
        rows = example_rows(data.test, config.prompting, lambda value: value, config.evaluation.cluster_column)
        for row, answer in zip(rows, self.answers(scores, None, None)):
            row.update(answer)
        return Prediction(rows, dict(scores.details))

    def answers(
        self, scores: Scores, labels: list[str] | None, thresholds: dict[str, float] | None
    ) -> list[dict[str, Any]]:
        return [{"prediction": text} for text in scores.texts or []]

    def metric_inputs(self, rows: list[dict[str, Any]], labels: list[str] | None) -> MetricInputs:
        return MetricInputs(
            references=[str(row["reference"]) for row in rows], predictions=[str(row["prediction"]) for row in rows]
        )


GENERATION = Generation()
