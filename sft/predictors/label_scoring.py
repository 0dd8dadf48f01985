"""Label scoring: single-label classification by the log-likelihood of each label after the prompt
(`sft.scoring.label_scoring`, normalized as `inference.normalization` says), turned into label
probabilities by a softmax over the label set and calibrated as `inference.calibration_args` says
(`sft.scoring.calibration`). Calibration prompts come from the same builder, instruction and
in-context examples as the prompts they calibrate, and are scored by the same call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sft.predictors import causal_lm
from sft.predictors.base import Fixed, Loaded, Predictor
from sft.scoring.calibration import apply_fitted, calibrate, prompt_context, softmax
from sft.scoring.label_scoring import classification_scores, content_free_prompt
from sft.tasks.base import Scorer, Scores

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig
    from sft.data.prepare import ExperimentData
    from sft.tasks.base import Task


def _label_scorer(config: ExperimentConfig, loaded: Loaded, labels: list[str], builder: Any, sampler: Any) -> Any:
    """prompts -> (prompts, labels) normalized label scores; calibration prompts go through the same call."""
    inference = config.inference
    content_free = content_free_prompt(builder, sampler, config.prompting.input_columns, inference)

    def label_scores(prompts: list[str]) -> Any:
        return classification_scores(loaded.model, loaded.tokenizer, prompts, labels, inference, content_free)

    return label_scores


def scorer(config: ExperimentConfig, task: Task, data: ExperimentData, loaded: Loaded, seed: int) -> Scorer:
    inference, labels = config.inference, data.labels or []
    builder = causal_lm.prompt_builder(config, task, loaded.tokenizer)
    sampler = causal_lm.sampler_of(data, seed)
    label_scores = _label_scorer(config, loaded, labels, builder, sampler)

    def score(split: Dataset) -> Scores:
        scores = label_scores(causal_lm.prompts_of(config, builder, sampler, split))
        context = prompt_context(builder, sampler, data, split, inference, label_scores, seed)
        calibrated = calibrate(inference.calibration_args, scores, context)
        raw = calibrated.uncalibrated
        if raw is None:
            return Scores(probabilities=calibrated.probabilities, details={"calibration": None})
        extras = [{"uncalibrated_probabilities": dict(zip(labels, row.tolist()))} for row in raw]
        return Scores(calibrated.probabilities, row_extras=extras, details={"calibration": calibrated.details})

    return score


def fixed_scorer(config: ExperimentConfig, task: Task, loaded: Loaded, fixed: Fixed) -> Scorer:
    """New inputs scored like the run's test prompts; the run's fitted calibration applied, not refitted."""
    labels = fixed.labels or []
    builder = causal_lm.prompt_builder(config, task, loaded.tokenizer)
    sampler = causal_lm.fixed_sampler(fixed)
    label_scores = _label_scorer(config, loaded, labels, builder, sampler)

    def score(inputs: Dataset) -> Scores:
        scores = label_scores(causal_lm.prompts_of(config, builder, sampler, inputs))
        probabilities = softmax(np.asarray(scores, dtype=np.float64))  # as `calibrate` does
        if fixed.calibration is not None:
            probabilities = apply_fitted(probabilities, fixed.calibration, labels)
        return Scores(probabilities=probabilities)

    return score


LABEL_SCORING = Predictor(
    "label_scoring",
    load=causal_lm.load,
    train=causal_lm.train,
    scorer=scorer,
    preflight=causal_lm.preflight,
    fixed_scorer=fixed_scorer,
)
