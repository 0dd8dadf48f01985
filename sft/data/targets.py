"""Targets built from columns (`structured.target_fields`): a structured task's answer object assembled
from other columns of the data, each value optionally mapped (e.g. GoEmotions' label list becomes
{"emotions": [...], "sentiment": ...}). The built column is `prompting.output_column`, stored as
canonical JSON text, so the rest of the flow reads it as if the data held it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sft.config import ConfigError, ExperimentConfig
from sft.config.schema import TargetField
from sft.tasks.structured import canonical

if TYPE_CHECKING:
    from datasets import DatasetDict


def with_target_fields(config: ExperimentConfig, splits: DatasetDict) -> DatasetDict:
    """`splits` with the output column built from `structured.target_fields` (unchanged without them);
    ConfigError naming the field, split and value for a missing column or an unmapped value."""
    from datasets import DatasetDict

    fields = config.structured.target_fields
    if not fields:
        return splits
    output = config.prompting.output_column
    built, problems = {}, []
    for name, split in splits.items():
        missing = sorted({field.column for field in fields.values()} - set(split.column_names))
        if missing:
            problems.append(
                f"structured.target_fields: column(s) {missing} not in split {name!r}; its columns are "
                f"{split.column_names}"
            )
            continue
        columns = split.select_columns(sorted({field.column for field in fields.values()}))[:]  # lists, read once
        try:
            values = [
                canonical({key: _value(field, columns[field.column][row]) for key, field in fields.items()})
                for row in range(len(split))
            ]
        except KeyError as error:
            problems.append(
                f"structured.target_fields: split {name!r} holds {error.args[0]!r}, which no field's map "
                "names; add it to the map"
            )
            continue
        kept = split.remove_columns(output) if output in split.column_names else split
        built[name] = kept.add_column(output, values)
    if problems:
        raise ConfigError(problems)
    return DatasetDict(built)


def _value(field: TargetField, value: Any) -> Any:
    if field.map is None:
        return value
    if not isinstance(value, list):
        return field.map[str(value)]
    mapped = list(dict.fromkeys(field.map[str(item)] for item in value))
    if field.mixed is None:
        return mapped
    return mapped[0] if len(mapped) == 1 else field.mixed
