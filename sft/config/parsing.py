"""Raw JSON values to `ExperimentConfig`: pydantic's errors turned into messages with the key path and
the fix, the sections each single-experiment command needs, and the schema's default of a dotted key
(`lora.r` -> 8), read from the schema itself so that old results are judged the same way."""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from sft.config.errors import ConfigError
from sft.config.experiment import SECTIONS, ExperimentConfig
from sft.registry import did_you_mean


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Settings as dotted keys (`lora.r`), the form grids, reports and trackers name them: nested dicts ->
    {"a.b.c": leaf}; lists and other leaves are kept as they are."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


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
            text = item["msg"].removeprefix("Value error, ")
            messages.append(f"{path}: {text} (got {shown(item.get('input'))})")
    return messages


def shown(value: Any) -> str:
    """A value as an error message quotes it: JSON, cut at 80 characters."""
    text = json.dumps(value, default=str)
    return text[:77] + "..." if len(text) > 80 else text


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


# -- schema defaults by key ------------------------------------------------------------------------------


NO_DEFAULT = object()  # the key has no schema default: required, or inside a free-form dict


def schema_default(key: str) -> Any:
    """The JSON value the schema gives `key` when a config leaves it out, or NO_DEFAULT."""
    model: type[BaseModel] = ExperimentConfig
    parts = key.split(".")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return NO_DEFAULT
        section = section_type(field.annotation)
        if index == len(parts) - 1 or not (isinstance(section, type) and issubclass(section, BaseModel)):
            if field.is_required():
                return NO_DEFAULT
            value = to_jsonable_python(field.get_default(call_default_factory=True))
            for inner in parts[index + 1 :]:  # a key inside a dict default (generation_args.max_new_tokens)
                if not isinstance(value, dict) or inner not in value:
                    return NO_DEFAULT
                value = value[inner]
            return value
        model = section
    return NO_DEFAULT


def differs_from_default(key: str, value: Any) -> bool:
    """Whether a setting was set by the user: its value is not the schema's default (1 is not True)."""
    default = schema_default(key)
    if default is NO_DEFAULT:
        return True
    return _comparable(value) != _comparable(default)


def _comparable(value: Any) -> Any:
    """16 and 16.0 alike (a float field's default may be written as an int), True and 1 not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value, sort_keys=True)
    return float(value)
