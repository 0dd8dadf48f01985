"""Few-shot LoRA training of a causal LM with TRL's SFTTrainer on prompt/completion chat examples.

Prompt/completion pairs make TRL mask the prompt out of the loss, so the adapter learns only the
answer (the task's target text). Prompts are built by the same `PromptBuilder` that inference uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset
from transformers import set_seed
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from sft.config import ExperimentConfig
from sft.config.adapters import adapter_traits
from sft.data.prepare import ExperimentData
from sft.data.prompts import ICLSampler, PromptBuilder, training_examples
from sft.model.adapters import peft_config
from sft.model.initialization.apply import apply_configured_initializer, checkpoint_key
from sft.model.initialization.data_driven import corda, eva
from sft.training.adapters import adapter_callbacks, planned_steps
from sft.training.batching import PADDED_BATCHES, PADDING_FREE, Batching, counting_trainer, padding_free_attention
from sft.training.common import (
    Trained,
    keep_initial_adapter,
    run_trainer,
    send_reports_to,
    trainer_arguments,
    training_batches,
)
from sft.training.selection import Selector, selection_callback

if TYPE_CHECKING:
    from sft.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """An SFTTrainer ready to train, with what running it needs: the examples' count, the untrained
    adapter of a base-rewriting initialization, the model-selection callback, the batching it uses,
    the attention implementation the model was loaded with (restored after training) and what results.json
    records of the adapter's initialization (sft's or a data-driven one of PEFT's)."""

    trainer: Any
    examples: int
    initial_adapter: Path | None
    selection: Any
    batching: Batching
    loaded_attention: str
    initialization: dict[str, Any] | None = None


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
    prepared = prepare_trainer(config, task, data, model, tokenizer, seed, run_folder, selector)
    try:
        return run_trainer(
            prepared.trainer,
            prepared.examples,
            prepared.initial_adapter,
            prepared.selection,
            prepared.batching,
            prepared.initialization,
        )
    finally:  # inference after training (scoring, generation) runs on the attention the model was loaded with
        if model.config._attn_implementation != prepared.loaded_attention:
            model.set_attn_implementation(prepared.loaded_attention)


def prepare_trainer(
    config: ExperimentConfig,
    task: Task,
    data: ExperimentData,
    model: Any,
    tokenizer: Any,
    seed: int,
    run_folder: Path,
    selector: Selector | None = None,
) -> Prepared:
    """The SFTTrainer `train_adapter` runs: prompt/completion examples of the shots, the LoRA layers (and
    an sft initializer, or PEFT's EVA or CorDA over the shots' token ids) on `model`, and the batching of
    `training.batching`, for which the model is switched to an attention implementation that takes
    padding-free rows (`sft.training.batching`)."""
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
    argument_values = trainer_arguments(config, run_folder, seed)
    send_reports_to(argument_values, run_folder)
    arguments = SFTConfig(**argument_values)
    adapter = peft_config(config.lora, total_steps=planned_steps(arguments, len(examples)))
    initialization = None
    if config.lora.data_driven == "corda":  # on the base model, before the trainer builds the adapter from it
        sequences = training_token_ids(tokenizer, examples, arguments.max_length)
        initialization = corda(model, adapter, sequences, checkpoint_key(config.model))
    loaded_attention = model.config._attn_implementation
    # A prompt-learning method prepends its virtual tokens to a whole row, not to each example packed in it:
    # such methods train on padded batches.
    packs = not adapter_traits(config.lora.method).virtual_tokens
    attention = padding_free_attention(model, config.training.batching) if packs else None
    if attention is not None:
        model.set_attn_implementation(attention)
    selection = selection_callback(selector, loaded_attention) if selector is not None else None
    # TRL's collator (the padded one when None); the padding-free one is passed in rather than asked for with
    # SFTConfig(padding_free=True), which refuses a max_length, so TRL still truncates as in padded training.
    collator = None
    if attention is not None:
        collator = DataCollatorForLanguageModeling(pad_token_id=_pad_id(tokenizer), padding_free=True)
    batching = Batching(PADDING_FREE if attention else PADDED_BATCHES, model.config._attn_implementation)
    # LoRA matrices are drawn from the global RNG when the trainer wraps the model.
    set_seed(seed)
    trainer = counting_trainer(SFTTrainer)(
        model=model,
        args=arguments,
        data_collator=collator,
        train_dataset=Dataset.from_list(examples),
        eval_dataset=validation,
        processing_class=tokenizer,
        peft_config=adapter,
        callbacks=[*([selection] if selection is not None else []), *adapter_callbacks(config.lora)] or None,
    )
    initial = keep_initial_adapter(trainer.model, run_folder)
    # The trainer built the LoRA layers with PEFT's default init; an sft initializer overwrites them now.
    initialization = apply_configured_initializer(trainer.model, config) or initialization
    if config.lora.data_driven == "eva":  # over the trainer's own batches of the shots, on its PEFT model
        batches = training_batches(trainer.train_dataset, trainer.data_collator, arguments.per_device_train_batch_size)
        initialization = eva(trainer.model, batches, len(examples), checkpoint_key(config.model))
    log.info("Training batches: %s, attention %s", batching.used, batching.attention)
    return Prepared(trainer, len(examples), initial, selection, batching, loaded_attention, initialization)


def training_token_ids(tokenizer: Any, examples: list[dict], max_length: int | None) -> list[list[int]]:
    """The token ids SFTTrainer trains on for each prompt/completion example: the conversation through the
    chat template, cut at `max_length` (its `max_length` argument). CorDA reads them before the trainer
    exists (it must run before the adapter is built); a test holds them equal to the trainer's own."""
    sequences = []
    for example in examples:
        encoded = tokenizer.apply_chat_template(
            example["prompt"] + example["completion"], tokenize=True, return_dict=True
        )
        ids = list(encoded["input_ids"])
        sequences.append(ids[:max_length] if max_length is not None else ids)
    return sequences


def _pad_id(tokenizer: Any) -> int:
    """The pad token SFTTrainer settles on (the tokenizer's, else its end of sequence); a padding-free row
    is padded only to a multiple on accelerators that compile per shape."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
