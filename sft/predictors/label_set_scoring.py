"""Label-set scoring: multilabel classification with a generative model, each label's probability of
being in the answer computed from label-sequence likelihoods (`sft.scoring.label_sets`); the task's
thresholds turn them into label sets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sft.predictors import causal_lm
from sft.predictors.base import Fixed, Loaded, Predictor
from sft.scoring.label_sets import label_set_probabilities
from sft.tasks.base import Scorer, Scores

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig
    from sft.data.prepare import ExperimentData
    from sft.tasks.base import Task


def _scorer(config: ExperimentConfig, task: Task, loaded: Loaded, labels: list[str], sampler: Any) -> Scorer:
    builder = causal_lm.prompt_builder(config, task, loaded.tokenizer)
    separator = config.prompting.label_separator

    def score(split: Dataset) -> Scores:
        prompts = causal_lm.prompts_of(config, builder, sampler, split)
        probabilities = label_set_probabilities(
            loaded.model, loaded.tokenizer, prompts, labels, separator, config.inference.batch_size
        )
        return Scores(probabilities=probabilities)

    return score


def scorer(config: ExperimentConfig, task: Task, data: ExperimentData, loaded: Loaded, seed: int) -> Scorer:
    return _scorer(config, task, loaded, list(data.labels or []), causal_lm.sampler_of(data, seed))


def fixed_scorer(config: ExperimentConfig, task: Task, loaded: Loaded, fixed: Fixed) -> Scorer:
    return _scorer(config, task, loaded, list(fixed.labels or []), causal_lm.fixed_sampler(fixed))


LABEL_SET_SCORING = Predictor(
    "label_set_scoring",
    load=causal_lm.load,
    train=causal_lm.train,
    scorer=scorer,
    preflight=causal_lm.preflight,
    fixed_scorer=fixed_scorer,
)
