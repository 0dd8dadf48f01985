"""Whole-grid validation before anything runs: the config schema, the argument names passed through to
peft / trl / transformers, metric names, and the data each experiment reads.

Every problem of every experiment is collected and raised as one ConfigError, so a researcher fixes a
grid in one pass instead of discovering errors one run at a time.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path

from sft.config.errors import ConfigError
from sft.config.grid import load_experiments
from sft.config.schema import ExperimentConfig
from sft.evaluation.metrics import METRICS
from sft.model.quantization import quantization_problems
from sft.registry import did_you_mean
from sft.tasks import task_for
from sft.tasks.base import selection_problems

# Set by sft itself, so a config must not set them.
RESERVED_LORA_KEYS = {
    "peft_type",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
}


@cache
def _lora_fields() -> frozenset[str]:
    from peft import LoraConfig

    return frozenset(field.name for field in dataclasses.fields(LoraConfig)) - RESERVED_LORA_KEYS


@cache
def _trainer_fields() -> frozenset[str]:
    from trl import SFTConfig

    return frozenset(field.name for field in dataclasses.fields(SFTConfig) if field.init)


@cache
def _head_trainer_fields() -> frozenset[str]:
    from transformers import TrainingArguments

    return frozenset(field.name for field in dataclasses.fields(TrainingArguments) if field.init)


@cache
def _generation_fields() -> frozenset[str]:
    from transformers import GenerationConfig

    return frozenset(GenerationConfig().to_dict()) - {"transformers_version", "_from_model_config"}


# Names people write from memory that string similarity cannot map to the real argument.
ALIASES = {"rank": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "epochs": "num_train_epochs"}


def _unknown_keys(keys, known: frozenset[str], where: str, library: str) -> list[str]:
    def hint(key: str) -> str:
        return f" (did you mean {ALIASES[key]!r}?)" if ALIASES.get(key) in known else did_you_mean(key, known)

    return [f"{where}.{key}: not an argument of {library}{hint(key)}" for key in keys if key not in known]


def library_problems(configs: dict[str, ExperimentConfig]) -> list[str]:
    """Argument names that peft, trl or transformers would reject (or silently ignore)."""
    problems = []
    for name, config in configs.items():
        found = []
        if config.lora is not None and config.lora.model_extra:
            found += _unknown_keys(config.lora.model_extra, _lora_fields(), "lora", "peft.LoraConfig")
        if config.training is not None and config.training.trainer_args:
            fields, library = (
                (_head_trainer_fields(), "transformers.TrainingArguments")
                if config.model.head
                else (_trainer_fields(), "trl.SFTConfig")
            )
            found += _unknown_keys(config.training.trainer_args, fields, "training.trainer_args", library)
        if config.dataset.task_type == "generation":
            found += _unknown_keys(
                config.inference.generation_args, _generation_fields(), "inference.generation_args", "model.generate"
            )
        found += quantization_problems(config.model.quantization)
        found += selection_problems(config, task_for(config))
        if config.evaluation.metrics:
            found += [f"evaluation.metrics: {message}" for message in METRICS.unknown(config.evaluation.metrics)]
        problems += [f"[{name}] {problem}" for problem in found]
    return problems


def data_problems_of(configs: dict[str, ExperimentConfig]) -> list[str]:
    """Load each distinct dataset once and check every experiment's columns, splits and labels on it."""
    from sft.data.splits import data_problems, load_splits

    loaded: dict[str, object] = {}
    problems = []
    for name, config in configs.items():
        key = json.dumps([config.dataset.path, config.dataset.args], sort_keys=True, default=str)
        if key not in loaded:
            try:
                loaded[key] = load_splits(config.dataset)
            except ConfigError as error:
                loaded[key] = error
        splits = loaded[key]
        found = splits.messages if isinstance(splits, ConfigError) else data_problems(config, splits)
        problems += [f"[{name}] {problem}" for problem in found]
    return problems


def grid_problems(configs: dict[str, ExperimentConfig], check_data: bool = True) -> list[str]:
    """Every problem of parsed configs that needs no model: library argument names, and the data."""
    problems = library_problems(configs)
    if check_data:
        problems += data_problems_of(configs)
    return problems


def validate_grid(
    path: str | Path, ext_vars: dict[str, str] | None = None, command: str = "run-experiment", check_data: bool = True
) -> dict[str, ExperimentConfig]:
    """Expand and validate a grid file (all but the models: see sft.experiment.preflight); raise one
    ConfigError with every problem found."""
    configs = load_experiments(path, ext_vars, command)
    problems = grid_problems(configs, check_data)
    if problems:
        raise ConfigError(problems)
    return configs
