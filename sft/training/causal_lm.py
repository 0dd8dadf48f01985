"""Few-shot LoRA training of a causal LM with TRL's SFTTrainer on prompt/completion chat examples.

Prompt/completion pairs make TRL mask the prompt out of the loss, so the adapter learns only the
answer (the task's target text). Prompts are built by the same `PromptBuilder` that inference uses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset
from transformers import set_seed
from trl import SFTConfig, SFTTrainer

from sft.config import ExperimentConfig
from sft.data.prepare import ExperimentData
from sft.data.prompts import ICLSampler, PromptBuilder, training_examples
from sft.model.adapters import peft_config
from sft.model.initialization.apply import apply_configured_initializer
from sft.training.adapters import adapter_callbacks, planned_steps
from sft.training.common import Trained, keep_initial_adapter, run_trainer, trainer_arguments
from sft.training.selection import Selector, selection_callback

if TYPE_CHECKING:
    from sft.tasks.base import Task

log = logging.getLogger(__name__)


def train_adapter(
    config: ExperimentConfig,
    task: Task,
    data: ExperimentData,
    model: Any,
    tokenizer: Any,
    seed: int,
    run_folder: Path,
    selector: Selector | None = None,
) -> Trained:
    """Train a LoRA adapter on the sampled shots; return the PEFT model and training statistics. With a
    `selector`, evaluate during training and return the best evaluation's adapter."""
    assert config.lora is not None and config.training is not None and data.shots is not None
    builder = PromptBuilder(tokenizer, config.prompting, target=lambda value: task.target_text(value, config.prompting))
    sampler = ICLSampler.of(data, seed, purpose="train")
    examples = training_examples(builder, sampler, data.shots, config.training.icl_examples)
    log.info("Training on %d examples with %d in-context examples each", len(examples), config.training.icl_examples)
    validation = None
    if selector is not None and config.training.eval_loss:  # the same prompt/completion pairs as training
        validation_sampler = ICLSampler.of(data, seed, purpose="validation")
        validation = Dataset.from_list(
            training_examples(builder, validation_sampler, selector.split, config.training.icl_examples, False)
        )
    selection = selection_callback(selector) if selector is not None else None
    # LoRA matrices are drawn from the global RNG when the trainer wraps the model.
    set_seed(seed)
    arguments = SFTConfig(**trainer_arguments(config, run_folder, seed))
    adapter = peft_config(config.lora, total_steps=planned_steps(arguments, len(examples)))
    trainer = SFTTrainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list(examples),
        eval_dataset=validation,
        processing_class=tokenizer,
        peft_config=adapter,
        callbacks=[*([selection] if selection is not None else []), *adapter_callbacks(config.lora)] or None,
    )
    initial = keep_initial_adapter(trainer.model, run_folder)
    # The trainer built the LoRA layers with PEFT's default init; an sft initializer overwrites them now.
    apply_configured_initializer(trainer.model, config)
    return run_trainer(trainer, len(examples), initial, selection)
