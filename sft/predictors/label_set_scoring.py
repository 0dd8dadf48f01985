"""Label-set scoring: multilabel classification with a generative model, each label's probability of
being in the answer computed from label-sequence likelihoods (`sft.scoring.label_sets`); the task's
thresholds turn them into label sets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sft.predictors import causal_lm
from sft.predictors.base import Loaded, Predictor
from sft.tasks.base import Scorer, Scores

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig
    from sft.data.prepare import ExperimentData
    from sft.tasks.base import Task


def scorer(config: ExperimentConfig, task: Task, data: ExperimentData, loaded: Loaded, seed: int) -> Scorer:
    from sft.scoring.label_sets import label_set_probabilities

    builder = causal_lm.prompt_builder(config, task, loaded.tokenizer)
    sampler = causal_lm.sampler_of(data, seed)
    labels, separator = list(data.labels or []), config.prompting.label_separator

    def score(split: Dataset) -> Scores:
        prompts = causal_lm.prompts_of(config, builder, sampler, split)
        probabilities = label_set_probabilities(
            loaded.model, loaded.tokenizer, prompts, labels, separator, config.inference.batch_size
        )
        return Scores(probabilities=probabilities)

    return score


LABEL_SET_SCORING = Predictor(
    "label_set_scoring", load=causal_lm.load, train=causal_lm.train, scorer=scorer, preflight=causal_lm.preflight
)
