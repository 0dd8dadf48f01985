"""Training a classification head (`model.head: "classification"`) with LoRA (PEFT task type SEQ_CLS)
and a transformers Trainer whose loss is the task's (`Task.head`: weighted cross-entropy for single
labels, BCE with pos_weight for label sets). PEFT adds the new head (`classifier` / `score`) to
`modules_to_save`, so it is trained in full and saved with the adapter. `training.class_weights`
weights the loss per label: a list as given, or "balanced" from the label counts of the shots.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from datasets import Dataset
from peft import get_peft_model
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from sft.config import ConfigError, ExperimentConfig
from sft.model.adapters import peft_config
from sft.model.initialization.apply import apply_configured_initializer, checkpoint_key
from sft.model.initialization.data_driven import eva
from sft.training.adapters import adapter_callbacks, planned_steps
from sft.training.batching import FASTEST, LENGTH_GROUPED, PADDED_BATCHES, Batching, counting_trainer
from sft.training.common import Trained, run_trainer, send_reports_to, trainer_arguments, training_batches
from sft.training.selection import Selector, selection_callback

if TYPE_CHECKING:
    from sft.data.prepare import ExperimentData
    from sft.tasks.base import HeadObjective

log = logging.getLogger(__name__)


def class_weights(
    config: ExperimentConfig, objective: HeadObjective, targets: np.ndarray, labels: list[str]
) -> np.ndarray | None:
    """Loss weights per label from `training.class_weights`; None for an unweighted loss."""
    setting = config.training.class_weights if config.training else None
    if setting is None:
        return None
    if isinstance(setting, list):
        if len(setting) != len(labels):
            raise ConfigError(
                [f"training.class_weights: {len(setting)} weights for {len(labels)} labels {labels}; give one each"]
            )
        return np.asarray(setting, dtype=np.float32)
    return objective.balanced_weights(targets, labels)


def _trainer_class() -> type:
    class LossTrainer(Trainer):
        """A Trainer whose loss is the task's (possibly weighted) head loss."""

        def __init__(self, *args: Any, loss_function: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.loss_function = loss_function

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            loss_function = self.loss_function.to(logits.device)
            loss = loss_function(logits, labels.to(logits.device))
            return (loss, outputs) if return_outputs else loss

    return LossTrainer


def training_arguments(config: ExperimentConfig, run_folder: Path, seed: int) -> dict[str, Any]:
    """transformers.TrainingArguments: sft's defaults and `training.trainer_args`, minus SFT-only keys."""
    known = {field.name for field in dataclasses.fields(TrainingArguments) if field.init}
    arguments = trainer_arguments(config, run_folder, seed)
    dropped = sorted(key for key in arguments if key not in known)
    if dropped:
        log.warning("Head mode ignores trainer_args that only trl.SFTConfig knows: %s", dropped)
    user = config.training.trainer_args if config.training else {}
    if head_batching(config).used == LENGTH_GROUPED and "train_sampling_strategy" not in user:
        # The head reads each example's last token, so examples cannot share a row: group by length instead.
        arguments["train_sampling_strategy"] = "group_by_length"
    return {key: value for key, value in arguments.items() if key in known}


def head_batching(config: ExperimentConfig, attention: str | None = None) -> Batching:
    """Length-grouped batches under `training.batching: fastest`, else padded ones in random order."""
    fastest = config.training is not None and config.training.batching == FASTEST
    return Batching(LENGTH_GROUPED if fastest else PADDED_BATCHES, attention)


def train_head(
    config: ExperimentConfig,
    objective: HeadObjective,
    data: ExperimentData,
    model: Any,
    tokenizer: Any,
    texts: list[str],
    max_length: int,
    seed: int,
    run_folder: Path,
    selector: Selector | None = None,
    validation_texts: list[str] | None = None,
) -> Trained:
    """Train a SEQ_CLS LoRA adapter and the head on the shots (`texts` are their model inputs). With a
    `selector` (and the model inputs of its validation examples), evaluate during training and return
    the best evaluation's adapter and head."""
    assert config.lora is not None and data.shots is not None and data.labels is not None
    labels = data.labels
    column = config.prompting.output_column

    def encoded_set(inputs: list[str], split: Dataset) -> Dataset:
        encoded = tokenizer(inputs, truncation=True, max_length=max_length)
        target = objective.targets(split[column], labels)
        return Dataset.from_dict(
            {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": target.tolist()}
        )

    train_set = encoded_set(texts, data.shots)
    weights = class_weights(config, objective, np.asarray(train_set["labels"]), labels)
    if weights is not None:
        log.info("Loss weights per label: %s", dict(zip(labels, weights.round(3).tolist())))
    validation = None
    if selector is not None and validation_texts is not None and config.training and config.training.eval_loss:
        validation = encoded_set(validation_texts, selector.split)
    selection = selection_callback(selector) if selector is not None else None
    # LoRA matrices and the new head are drawn from the global RNG.
    set_seed(seed)
    argument_values = training_arguments(config, run_folder, seed)
    send_reports_to(argument_values, run_folder)
    arguments = TrainingArguments(**argument_values)
    adapter = peft_config(config.lora, "SEQ_CLS", planned_steps(arguments, len(train_set)))
    model = get_peft_model(model, adapter)
    initialization = apply_configured_initializer(model, config)  # pca / pissa / umap, as in generative mode
    collator = DataCollatorWithPadding(tokenizer)
    if config.lora.data_driven == "eva":  # over the head's model inputs of the shots (their labels are classes)
        inputs = train_set.remove_columns("labels")
        batches = training_batches(inputs, collator, arguments.per_device_train_batch_size)
        initialization = eva(model, batches, len(train_set), checkpoint_key(config.model))
    log.info("Training the head and the %s adapter on %d examples", config.lora.method, len(train_set))
    loss = objective.loss(None if weights is None else torch.tensor(weights, dtype=torch.float32))
    batching = head_batching(config, model.config._attn_implementation)
    if argument_values.get("train_sampling_strategy") != "group_by_length":
        batching = Batching(PADDED_BATCHES, batching.attention)
    trainer = counting_trainer(_trainer_class())(
        model=model,
        args=arguments,
        train_dataset=train_set,
        eval_dataset=validation,
        data_collator=collator,
        loss_function=loss,
        callbacks=[*([selection] if selection is not None else []), *adapter_callbacks(config.lora)] or None,
    )
    return run_trainer(trainer, len(train_set), selection=selection, batching=batching, initialization=initialization)
