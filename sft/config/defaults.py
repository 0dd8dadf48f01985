"""The schema's default of a dotted setting key (`lora.r` -> 8), so reports can show only what a user
set. Read from the schema itself, so old results (without newer fields) are judged the same way."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from sft.config.parsing import section_type
from sft.config.schema import ExperimentConfig

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
