"""sft.tasks.structured and sft.evaluation.structured: the schema (given, inferred, checked), canonical
targets, field counts, the metrics and their resampled forms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sft.config import EvaluationConfig, parse_config
from sft.evaluation.batched import sufficient_statistics
from sft.evaluation.metrics import compute_metrics
from sft.tasks import TASKS
from sft.tasks.base import Scores
from sft.tasks.structured import (
    canonical,
    field_counts,
    field_kinds,
    infer_schema,
    schema_problems,
    token_f1,
    validated,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"enum": ["negative", "neutral", "positive"]},
        "rating": {"type": "integer"},
        "summary": {"type": "string"},
        "aspects": {"type": "array", "items": {"enum": ["price", "quality"]}, "uniqueItems": True},
        "shop": {"type": "object", "properties": {"open": {"type": "boolean"}}},
    },
    "required": ["sentiment", "rating"],
}
KINDS = {"aspects": "set", "rating": "number", "sentiment": "category", "shop.open": "category", "summary": "text"}


def test_canonical_serialization_sorts_keys_without_spaces():
    assert canonical({"b": [1, 2], "a": "é"}) == '{"a":"é","b":[1,2]}'
    assert TASKS["structured"].target_text('{"b": 1, "a": 2}', None) == '{"a":2,"b":1}'


def test_field_kinds_walk_nested_objects_and_name_what_cannot_be_compared():
    assert field_kinds(SCHEMA) == (KINDS, [])
    _, problems = field_kinds(
        {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"}}}}
    )
    assert len(problems) == 1 and "'items'" in problems[0] and "array of those scalars" in problems[0]


def test_a_schema_that_is_not_json_schema_or_not_an_object_is_refused_with_its_path():
    (problem,) = schema_problems({"type": "object", "properties": {"a": {"type": "strnig"}}})
    assert "properties.a.type" in problem and "not a valid JSON Schema" in problem
    (problem,) = schema_problems({"type": "array"})
    assert "must be an object" in problem


def test_the_inferred_schema_has_types_required_keys_and_enums_of_repeated_strings():
    values = [{"label": "a", "note": f"text {i}", "n": i, "tags": ["x"]} for i in range(3)] + [{"label": "a", "n": 1.5}]
    schema = infer_schema(values, enum_limit=5)
    assert schema["required"] == ["label", "n"]
    assert schema["properties"]["label"] == {"enum": ["a"]}
    assert schema["properties"]["note"] == {"type": "string"}  # each value seen once: free text
    assert schema["properties"]["n"] == {"type": "number"}
    assert schema["properties"]["tags"] == {"type": "array", "items": {"enum": ["x"]}}
    assert schema_problems(schema) == [] and field_kinds(schema)[1] == []


def test_token_f1_and_field_counts_of_every_kind():
    assert token_f1("a nice phone", "nice phone") == pytest.approx(0.8)
    assert token_f1("", "") == 1.0
    truth = {"sentiment": "positive", "rating": 4, "summary": "a nice phone", "aspects": ["price", "quality"],
             "shop": {"open": True}}  # fmt: skip
    guess = {"sentiment": "negative", "rating": 5, "summary": "nice phone", "aspects": ["price"]}
    counts = field_counts(truth, guess, KINDS, tolerance=1.0)
    assert counts["sentiment"] == [0, 1, 1] and counts["rating"] == [1, 0, 0]  # within the tolerance
    assert counts["summary"] == pytest.approx([0.8, 0.2, 0.2]) and counts["aspects"] == [1, 0, 1]
    assert counts["shop.open"] == [0, 0, 1]  # missing from the answer
    assert field_counts(truth, None, KINDS, 0.0)["aspects"] == [0, 0, 2]


def test_answers_are_valid_only_when_they_parse_and_fit_the_schema():
    assert validated('{"sentiment":"neutral","rating":3,"aspects":["price","price"]}', SCHEMA) == {
        "sentiment": "neutral", "rating": 3, "aspects": ["price"]}  # fmt: skip
    assert validated('{"sentiment":"meh","rating":3}', SCHEMA) is None
    assert validated('{"sentiment":"neutral"', SCHEMA) is None
    assert validated("[1]", SCHEMA) is None


def _rows() -> list[dict]:
    task = TASKS["structured"]
    references = [{"sentiment": "positive", "rating": 4, "aspects": ["price"]},
                  {"sentiment": "neutral", "rating": 3, "aspects": []},
                  {"sentiment": "negative", "rating": 1, "aspects": ["quality"]}]  # fmt: skip
    texts = ['{"aspects":["price"],"rating":4,"sentiment":"positive"}', '{"rating":3,"sentiment":"negative"}', "oops"]
    rows = []
    for reference, answer in zip(references, task.answers(Scores(texts=texts, details={"schema": SCHEMA}), None, None)):
        counts = field_counts(reference, answer["prediction"], {"aspects": "set", "rating": "number",
                                                                 "sentiment": "category"}, 0.0)  # fmt: skip
        kinds = {"aspects": "set", "rating": "number", "sentiment": "category"}
        fields = {path: {"kind": kinds[path], "counts": found} for path, found in counts.items()}
        rows.append({"reference": reference, **answer, "fields": fields})
    return json.loads(json.dumps(rows))  # as predictions.jsonl holds them


def test_metrics_of_a_structured_prediction():
    inputs = TASKS["structured"].metric_inputs(_rows(), None)
    metrics = compute_metrics(inputs, TASKS["structured"].default_metrics, EvaluationConfig())
    assert metrics["valid"] == pytest.approx(2 / 3) and metrics["exact_match"] == pytest.approx(1 / 3)
    # aspects: tp 1, fn 1 -> 2/3; rating: tp 2, fn 1 -> 0.8; sentiment: tp 1, fp 1, fn 2 -> 0.4
    assert metrics["field_f1_macro"] == pytest.approx((2 / 3 + 0.8 + 0.4) / 3)
    assert metrics["field_f1_micro"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 4))
    assert metrics["per_field"]["rating"]["accuracy"] == pytest.approx(2 / 3)
    assert metrics["per_field"]["aspects"]["kind"] == "set"


def test_the_resampled_forms_equal_the_metrics():
    inputs = TASKS["structured"].metric_inputs(_rows(), None)
    metrics = compute_metrics(inputs, ["valid", "exact_match", "field_f1"], EvaluationConfig())
    sufficient = sufficient_statistics(inputs, ["valid", "exact_match", "field_f1"], EvaluationConfig())
    assert set(sufficient) == {"valid", "exact_match", "field_f1_micro", "field_f1_macro"}
    for key, statistic in sufficient.items():
        assert statistic.value() == pytest.approx(metrics[key])
    assert sufficient["valid"].binary and np.array_equal(sufficient["valid"].correct(), [1, 1, 0])


def test_defaults_of_the_structured_section_keep_the_config_hash():
    raw = {
        "dataset": {"path": "d"},
        "model": {"name": "m"},
        "prompting": {"input_columns": ["t"], "output_column": "l"},
    }
    plain = parse_config(raw)
    spelled = parse_config({**raw, "structured": {"constrained": True, "number_tolerance": 0.0}})
    assert plain.config_hash() == spelled.config_hash() and "structured" not in plain.hashed_settings()
