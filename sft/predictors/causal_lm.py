"""Loading and training shared by the three generative predictors (label scoring, label-set scoring,
generation): a causal LM with its chat template, trained with TRL on the task's target text, and the
prompts every one of them builds the same way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sft.data.prompts import FixedExamples, ICLSampler, PromptBuilder, inference_prompts
from sft.predictors.base import Fixed, Loaded

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig
    from sft.data.prepare import ExperimentData
    from sft.tasks.base import Task
    from sft.training.common import Trained


def load(
    config: ExperimentConfig, task: Task, labels: list[str] | None, adapter: str | None, trainable: bool
) -> Loaded:
    from sft.model.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(config.model)
    return Loaded(load_model(config.model, adapter=adapter, trainable=trainable), tokenizer)


def train(
    config: ExperimentConfig, task: Task, data: ExperimentData, loaded: Loaded, seed: int, folder: Path
) -> Trained:
    from sft.training.causal_lm import train_adapter

    return train_adapter(config, task, data, loaded.model, loaded.tokenizer, seed, folder)


def prompt_builder(config: ExperimentConfig, task: Task, tokenizer: Any) -> PromptBuilder:
    """The inference prompt builder: the task's target text for shown examples, `max_seq_length`."""
    prompting = config.prompting
    return PromptBuilder(
        tokenizer, prompting, config.inference.max_seq_length, target=lambda value: task.target_text(value, prompting)
    )


def prompts_of(
    config: ExperimentConfig, builder: PromptBuilder, sampler: ICLSampler | FixedExamples, split: Dataset
) -> list[str]:
    """One inference prompt per example of `split`, with the configured in-context examples."""
    inference = config.inference
    return inference_prompts(builder, sampler, split, inference.icl_examples, inference.icl_fixed)


def sampler_of(data: ExperimentData, seed: int) -> ICLSampler:
    return ICLSampler.of(data, seed, purpose="inference")


def fixed_sampler(fixed: Fixed) -> FixedExamples:
    """The run's fixed in-context examples, shown before every new input."""
    return FixedExamples(fixed.icl_examples)
