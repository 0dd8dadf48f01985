"""Loading and training shared by the three generative predictors (label scoring, label-set scoring,
generation): a causal LM with its chat template, trained with TRL on the task's target text, and the
prompts every one of them builds the same way."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import AutoModelForCausalLM
from trl import SFTConfig

from sft.config import DEFAULT_SEED, ConfigError
from sft.data.prompts import FixedExamples, ICLSampler, PromptBuilder, inference_prompts
from sft.model import preflight as model_preflight
from sft.model.loading import load_model, load_tokenizer
from sft.predictors.base import Fixed, Loaded
from sft.training.causal_lm import train_adapter
from sft.training.common import argument_problems, trainer_arguments
from sft.training.selection import selector_for

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig
    from sft.data.prepare import ExperimentData
    from sft.predictors.base import ScorerOf
    from sft.tasks.base import Task
    from sft.training.common import Trained


def load(
    config: ExperimentConfig, task: Task, labels: list[str] | None, adapter: str | None, trainable: bool
) -> Loaded:
    tokenizer = load_tokenizer(config.model)
    return Loaded(load_model(config.model, adapter=adapter, trainable=trainable), tokenizer)


def train(
    config: ExperimentConfig,
    task: Task,
    data: ExperimentData,
    loaded: Loaded,
    seed: int,
    folder: Path,
    score_with: ScorerOf,
) -> Trained:
    selector = selector_for(config, task, data, score_with)
    return train_adapter(config, task, data, loaded.model, loaded.tokenizer, seed, folder, selector)


def preflight(config: ExperimentConfig, task: Task) -> list[str]:
    """What would fail when this experiment loads its causal LM, trains and builds prompts, found with the
    model's config, tokenizer and a meta-device skeleton (`sft.model.preflight`), no weights."""
    problems = model_preflight.device_problems(config.model)
    try:
        tokenizer = model_preflight.tokenizer(config.model, chat=True)
    except ConfigError as error:
        return problems + error.messages
    problems += chat_format_problems(config, task, tokenizer)
    problems += model_preflight.quantized_kernel_problems(config.model, AutoModelForCausalLM)
    if config.trains and config.lora is not None:
        failure = f"model.name: transformers cannot build {config.model.name!r} as a causal LM"
        problems += model_preflight.structure_problems(config.model, AutoModelForCausalLM, failure, config.lora)
    if config.trains and config.training is not None:

        def check_arguments() -> list[str]:
            with tempfile.TemporaryDirectory() as folder:
                arguments = trainer_arguments(config, Path(folder), DEFAULT_SEED)
                return argument_problems(config, SFTConfig, arguments)

        key = ["SFTConfig", config.training.trainer_args, config.model.device]
        problems += model_preflight.once(key, check_arguments)
    return problems


def chat_format_problems(config: ExperimentConfig, task: Task, tokenizer: Any) -> list[str]:
    """`inference.max_seq_length` must leave room for an input after the instruction and chat format."""
    limit = config.inference.max_seq_length
    if limit is None:
        return []
    builder = prompt_builder(config, task, tokenizer)
    empty = dict.fromkeys(config.prompting.input_columns, "")
    length = builder.count_tokens(builder.render(builder.messages(empty, [])))
    if length < limit:
        return []
    return [
        f"inference.max_seq_length: {limit} tokens, but the instruction and chat format alone take {length}; "
        f"raise it well above {length} (or shorten prompting.instruction)"
    ]


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
