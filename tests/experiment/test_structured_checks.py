"""A structured config's bad input is refused before any model loads, with the key and the fix: a
schema that is not JSON Schema, a field the metrics cannot compare, targets that do not fit, settings
the task would not use, a grammar the engine cannot compile."""

from __future__ import annotations

import pytest
from helpers import problems_of

from sft.config import ConfigError, parse_config
from sft.experiment.checks import checked_config, data_problems_of

BASE = {
    "dataset": {"path": "data", "task_type": "structured"},
    "model": {"name": "m"},
    "prompting": {"input_columns": ["text"], "output_column": "target"},
}


def refused(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        checked_config(raw)
    return "\n".join(caught.value.messages)


def test_settings_the_task_would_not_use_are_refused():
    assert "structured.regex: a structured task" in refused({**BASE, "structured": {"regex": "[a-z]+"}})
    generation = {**BASE, "dataset": {"path": "data", "task_type": "generation"}}
    assert "structured.json_schema: only dataset.task_type structured" in refused(
        {**generation, "structured": {"json_schema": {"type": "object", "properties": {}}}}
    )
    classification = {**BASE, "dataset": {"path": "data"}}
    assert "only task_type generation" in refused({**classification, "structured": {"choices": ["a", "b"]}})
    checked_config({**generation, "structured": {"choices": ["a", "b"]}})  # a generation task may constrain


def test_one_constraint_at_a_time():
    (problem,) = problems_of({**BASE, "structured": {"regex": "a", "choices": ["a"]}})
    assert "keep one" in problem


def test_a_bad_schema_or_an_uncomparable_field_is_named():
    assert "properties.a.type" in refused(
        {**BASE, "structured": {"json_schema": {"type": "object", "properties": {"a": {"type": "text"}}}}}
    )
    nested = {"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "object"}}}}
    assert "'rows'" in refused({**BASE, "structured": {"json_schema": nested}})


def test_targets_that_do_not_fit_the_schema_or_do_not_parse_are_named_with_their_row(tmp_path):
    from sft.synthetic import write_splits

    rows = [{"text": "x", "target": {"rating": 3}}, {"text": "y", "target": {"rating": "three"}}]
    data = write_splits(tmp_path / "data", {"train": rows, "test": rows})
    schema = {"type": "object", "properties": {"rating": {"type": "integer"}}}
    config = parse_config({**BASE, "dataset": {**BASE["dataset"], "path": str(data)},
                           "structured": {"json_schema": schema}})  # fmt: skip
    problems = data_problems_of({"x": config})
    assert any("row 1 of split 'test'" in p and "at rating" in p for p in problems), problems
    broken = write_splits(tmp_path / "broken", {"test": [{"text": "x", "target": "{not json"}]})
    config = parse_config({**BASE, "dataset": {**BASE["dataset"], "path": str(broken)},
                           "structured": {"json_schema": schema}})  # fmt: skip
    (problem,) = data_problems_of({"x": config})
    assert "is not a JSON object" in problem and "row 0" in problem
