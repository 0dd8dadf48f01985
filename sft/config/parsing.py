"""Raw JSON values to `ExperimentConfig`: pydantic's errors turned into messages with the key path and
the fix, and the sections each single-experiment command needs."""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from sft.config.errors import ConfigError
from sft.config.schema import SECTIONS, ExperimentConfig
from sft.registry import did_you_mean

COMMAND_SECTIONS = {
    # sections a command needs beyond dataset, model and prompting (which every config has)
    "train": ("lora", "training"),
    "run-experiment": (),
    "predict": (),
    "evaluate": (),
}

SECTION_EXAMPLES = {
    "lora": '"lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"}',
    "training": '"training": {"trainer_args": {"num_train_epochs": 3, "learning_rate": 1e-4}}',
}


def check_command(config: ExperimentConfig, command: str) -> list[str]:
    """Problems that make `config` unusable for `command` (e.g. training without a lora section)."""
    problems = []
    needed = list(COMMAND_SECTIONS.get(command, ()))
    if command == "train" and not config.trains:
        problems.append("dataset.shots: `train` needs shots > 0; with shots = 0 there is nothing to train")
    if command == "run-experiment" and config.trains:
        needed += ["lora", "training"]
    for section in needed:
        if getattr(config, section) is None:
            problems.append(
                f"{section}: this section is required by `{command}` when dataset.shots > 0; "
                f"add for instance {SECTION_EXAMPLES[section]}"
            )
    return problems


def parse_config(raw: Any, source: str = "config") -> ExperimentConfig:
    """Validate one raw config; raise ConfigError listing every problem, each prefixed by `source`."""
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: a config must be an object with sections {', '.join(SECTIONS)}"])
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError([f"{source}: {message}" for message in describe_errors(error)]) from None


def describe_errors(error: ValidationError) -> list[str]:
    """Turn pydantic's errors into messages that name the key path and say how to fix it."""
    messages = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        path = ".".join(loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            known = _fields_at(ExperimentConfig, item["loc"][:-1])
            hint = did_you_mean(loc[-1], known)
            listing = f" Known keys here: {', '.join(known)}." if known else ""
            messages.append(f"{path}: unknown key {loc[-1]!r}{hint}.{listing}")
        elif kind == "missing":
            messages.append(f"{path}: required key is missing")
        else:
            shown = json.dumps(item.get("input"), default=str)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            text = item["msg"].removeprefix("Value error, ")
            messages.append(f"{path}: {text} (got {shown})")
    return messages


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the section found by walking `loc` from `model` (empty when it is not a section)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        current = section_type(current.model_fields[part].annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def section_type(annotation: Any) -> Any:
    """The section model of a field's annotation (`LoraSection | None` -> LoraSection), or the annotation."""
    if get_origin(annotation) is None:
        return annotation
    models = [arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
    return models[0] if models else None
