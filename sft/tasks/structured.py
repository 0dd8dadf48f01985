"""Structured outputs: every answer is a JSON object that fits a JSON Schema, scored field by field.

Data: the output column holds JSON objects, or strings that parse to them (`structured.target_fields`
builds them from other columns instead). `read_split` keeps each as its canonical serialization (keys
sorted, separators "," and ":", no whitespace), so the model is trained on one form and the grammar
(`sft.predictors.grammar`) decodes that same form. The schema is `structured.json_schema`, or inferred
from the training targets (`infer_schema`) and recorded in results.json and the export.

Fields are the schema's leaves, named by key path ("address.city"); each has a kind the metrics
compare it by (`field_kinds`): a category (enum, const, boolean: right or wrong), a number (right
within `structured.number_tolerance`), text (token F1) or a set (a list: precision and recall over its
items). Every prediction row carries each field's counts (`field_counts`: true positives, false
positives, false negatives), so the metrics and the report's bootstrap are sums over examples.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.evaluation.metrics import MetricInputs
from sft.tasks.base import HeadObjective, Prediction, Scorer, Scores, example_rows

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig, InferenceConfig, PromptingConfig
    from sft.data.prepare import ExperimentData

CATEGORY, NUMBER, TEXT, SET = "category", "number", "text", "set"
KINDS = (CATEGORY, NUMBER, TEXT, SET)
# Scores.details key the structured scorer fills with the schema its answers were decoded under.
SCHEMA_DETAIL = "schema"


def column_values(split: Dataset, column: str) -> list[Any]:
    """A column as a Python list, read in one pass (indexing a datasets column row by row reads it anew)."""
    return list(split.select_columns([column])[:][column])


def canonical(value: Any) -> str:
    """The one serialization of a JSON value: keys sorted, no whitespace, Unicode kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_object(value: Any) -> dict[str, Any]:
    """A target as an object: a dict as it is, a string parsed; ValueError for anything else."""
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"not a JSON object: {value!r}")
    return parsed


# -- the schema ---------------------------------------------------------------------------------------------


def infer_schema(values: Sequence[dict[str, Any]], enum_limit: int) -> dict[str, Any]:
    """A JSON Schema of the objects `values`: each key's type, the keys every object has as required, and
    an enum for strings (or lists of strings) with at most `enum_limit` distinct values, each seen twice."""
    return _infer([value for value in values], enum_limit)


def _infer(values: list[Any], enum_limit: int) -> dict[str, Any]:
    present = [value for value in values if value is not None]
    if not present:
        return {"type": "null"}
    if all(isinstance(value, dict) for value in present):
        keys = sorted({key for value in present for key in value})
        properties = {key: _infer([value.get(key) for value in present if key in value], enum_limit) for key in keys}
        required = [key for key in keys if all(key in value for value in present)]
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    if all(isinstance(value, list) for value in present):
        return {"type": "array", "items": _infer([item for value in present for item in value], enum_limit)}
    if all(isinstance(value, bool) for value in present):
        return {"type": "boolean"}
    if all(isinstance(value, int) and not isinstance(value, bool) for value in present):
        return {"type": "integer"}
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in present):
        return {"type": "number"}
    if all(isinstance(value, str) for value in present):
        counts = Counter(present)
        if len(counts) <= enum_limit and min(counts.values()) >= 2:
            return {"enum": sorted(counts)}
        return {"type": "string"}
    return {}  # mixed types: anything (the field check names it)


def schema_problems(schema: Any, where: str = "structured.json_schema") -> list[str]:
    """Why `schema` cannot describe the answers: not valid JSON Schema, or not an object with properties."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        return [f"{where}: must be a JSON Schema object, got {schema!r}"]
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as error:
        path = ".".join(str(part) for part in error.absolute_path) or "(top)"
        return [f"{where}: not a valid JSON Schema at {path}: {error.message}; fix it (see json-schema.org)"]
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        return [
            f'{where}: the answer must be an object: give {{"type": "object", "properties": {{...}}}} '
            f"(got type {schema.get('type')!r})"
        ]
    return []


def field_kinds(schema: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """({key path: kind} of the schema's leaf fields, problems naming fields the metrics cannot compare)."""
    kinds: dict[str, str] = {}
    problems: list[str] = []
    _walk(schema, "", kinds, problems)
    return kinds, problems


def _scalar_kind(schema: dict[str, Any]) -> str | None:
    if "enum" in schema or "const" in schema or schema.get("type") == "boolean":
        return CATEGORY
    if schema.get("type") in ("number", "integer"):
        return NUMBER
    if schema.get("type") == "string":
        return TEXT
    return None


def _walk(schema: dict[str, Any], prefix: str, kinds: dict[str, str], problems: list[str]) -> None:
    for key in sorted(schema.get("properties", {})):
        sub = schema["properties"][key]
        path = f"{prefix}{key}"
        if not isinstance(sub, dict):
            problems.append(f"structured.json_schema: field {path!r} has no schema object; give one, e.g. {{}}")
            continue
        if sub.get("type") == "object" and isinstance(sub.get("properties"), dict):
            _walk(sub, f"{path}.", kinds, problems)
            continue
        kind = _scalar_kind(sub)
        items = sub.get("items")
        if kind is None and sub.get("type") == "array" and isinstance(items, dict) and _scalar_kind(items):
            kind = SET
        if kind is None:
            problems.append(
                f"structured.json_schema: field {path!r} ({canonical(sub)}) is not a field the metrics can compare; "
                "give it a type string, number, integer or boolean, an enum, an object with properties, or an "
                "array of those scalars"
            )
            continue
        kinds[path] = kind


def schema_of(config: ExperimentConfig, targets: Sequence[Any]) -> dict[str, Any]:
    """The experiment's schema: `structured.json_schema`, else inferred from `targets` (canonical JSON)."""
    if config.structured.json_schema is not None:
        return config.structured.json_schema
    return infer_schema([parse_object(value) for value in targets], config.structured.enum_limit)


# -- answers and their fields ---------------------------------------------------------------------------------


def validated(text: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The answer `text` as an object when it parses and fits `schema` (duplicates of a uniqueItems list
    dropped first: the grammar cannot forbid them), else None."""
    from jsonschema import ValidationError
    from jsonschema.validators import validator_for

    try:
        answer = _unique_items(json.loads(text), schema)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    try:
        validator_for(schema)(schema).validate(answer)
    except ValidationError:
        return None
    return answer


def _unique_items(value: Any, schema: Any) -> Any:
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {key: _unique_items(item, properties.get(key)) for key, item in value.items()}
    if isinstance(value, list) and schema.get("uniqueItems"):
        return [item for index, item in enumerate(value) if item not in value[:index]]
    return value


def field_value(value: dict[str, Any] | None, path: str) -> tuple[bool, Any]:
    """(present, value) of a key path in an object."""
    current: Any = value
    for key in path.split("."):
        if not isinstance(current, dict) or key not in current:
            return False, None
        current = current[key]
    return True, current


def _words(value: Any) -> list[str]:
    return re.findall(r"\w+", str(value).lower())


def token_f1(reference: Any, prediction: Any) -> float:
    """F1 of the words two texts share (counted with multiplicity); two empty texts agree."""
    truth, guess = Counter(_words(reference)), Counter(_words(prediction))
    if not truth and not guess:
        return 1.0
    common = sum((truth & guess).values())
    return 2 * common / (sum(truth.values()) + sum(guess.values()))


def field_counts(
    reference: dict[str, Any], prediction: dict[str, Any] | None, kinds: dict[str, str], tolerance: float
) -> dict[str, list[float]]:
    """[true positives, false positives, false negatives] of every field: a category or number is one item
    (right: tp; wrong: fp and fn; missing: fn), text one item weighted by its token F1, a set its items."""
    counts = {}
    for path, kind in kinds.items():
        has_truth, truth = field_value(reference, path)
        has_guess, guess = field_value(prediction, path)
        counts[path] = _counts(kind, has_truth, truth, has_guess, guess, tolerance)
    return counts


def _counts(kind: str, has_truth: bool, truth: Any, has_guess: bool, guess: Any, tolerance: float) -> list[float]:
    if kind == SET:
        truths = {canonical(item) for item in truth or []} if has_truth else set()
        guesses = {canonical(item) for item in guess or []} if has_guess and isinstance(guess, list) else set()
        return [float(len(truths & guesses)), float(len(guesses - truths)), float(len(truths - guesses))]
    if not has_truth:
        return [0.0, 1.0 if has_guess else 0.0, 0.0]
    if not has_guess:
        return [0.0, 0.0, 1.0]
    if kind == TEXT:
        score = token_f1(truth, guess)
        return [score, 1 - score, 1 - score]
    if kind == NUMBER:
        right = _number(guess) is not None and _number(truth) is not None and abs(guess - truth) <= tolerance
    else:
        right = canonical(truth) == canonical(guess)
    return [1.0, 0.0, 0.0] if right else [0.0, 1.0, 1.0]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- the task --------------------------------------------------------------------------------------------------


class Structured:
    name = "structured"
    headline_metric = "field_f1_macro"
    table_metrics: tuple[str, ...] = ("valid", "exact_match", "field_f1_micro", "field_f1_macro")
    default_metrics: tuple[str, ...] = ("valid", "exact_match", "field_f1", "per_field")
    report_plots: frozenset[str] = frozenset()
    generative_predictor = "generation"
    head: HeadObjective | None = None  # a classification head cannot generate (the config checks say so)
    structured_output = True

    def tunes_thresholds(self, inference: InferenceConfig) -> bool:
        return False

    def reads_train_split(self, config: ExperimentConfig) -> bool:
        """An inferred schema comes from the training targets, so the training split is read even zero-shot."""
        return config.structured.json_schema is None

    def output_schema(self, config: ExperimentConfig, splits: Sequence[Dataset]) -> dict[str, Any] | None:
        """The schema: configured, else inferred from the first of `splits` (the training split when read)."""
        return schema_of(config, column_values(splits[0], config.prompting.output_column) if splits else [])

    def read_split(self, split: Dataset, column: str, labels: list[str] | None) -> Dataset:
        """The output column as canonical JSON strings (a row that does not parse is left as it is:
        `label_problems` names it)."""

        def canonical_or_raw(value: Any) -> Any:
            try:
                return canonical(parse_object(value))
            except ValueError:
                return value if isinstance(value, str) else json.dumps(value, default=str)

        values = [canonical_or_raw(value) for value in column_values(split, column)]
        return split.remove_columns(column).add_column(column, values)

    def label_problems(
        self, splits: dict[str, Dataset], names: dict[str, str], config: ExperimentConfig, complete: bool
    ) -> list[str]:
        """Targets that are not JSON objects, a schema that is not valid JSON Schema, fields the metrics
        cannot compare, targets that do not fit the schema: each with its split, row and the fix."""
        column = config.prompting.output_column
        parsed: dict[str, list[dict[str, Any]]] = {}
        problems = []
        for key, split in splits.items():
            objects = []
            for row, value in enumerate(column_values(split, column)):
                try:
                    objects.append(parse_object(value))
                except ValueError:
                    problems.append(
                        f"prompting.output_column: row {row} of split {names[key]!r} in column {column!r} is not a "
                        f"JSON object ({str(value)[:80]!r}); store objects, or strings that parse to them"
                    )
                    break
            parsed[key] = objects
        if problems:
            return problems
        if config.structured.json_schema is not None:
            schema = config.structured.json_schema
            problems += schema_problems(schema)
        else:
            source = parsed.get("dataset.train_split") or next(iter(parsed.values()), [])
            schema = infer_schema(source, config.structured.enum_limit)
            problems += schema_problems(schema, "the schema inferred from the training targets")
        if problems:
            return problems
        _, unfit = field_kinds(schema)
        problems += unfit
        fix = (
            "fix the data or the schema"
            if config.structured.json_schema is not None
            else "the schema was inferred from the training targets; give structured.json_schema covering every split"
        )
        problems += _fit_problems(schema, parsed, names, fix)
        return problems

    def label_set(self, splits: Sequence[Dataset], column: str, configured: list[str] | None) -> None:
        return None

    def example_groups(self, values: Sequence[Any], labels: list[str] | None) -> list[np.ndarray]:
        return [np.arange(len(values))]

    def target_text(self, value: Any, prompting: PromptingConfig) -> str:
        return canonical(parse_object(value))

    def predict(self, config: ExperimentConfig, data: ExperimentData, score: Scorer) -> Prediction:
        scores = score(data.test)
        schema = data.schema or scores.details.get(SCHEMA_DETAIL) or {}
        kinds, _ = field_kinds(schema)
        tolerance = config.structured.number_tolerance
        rows = example_rows(data.test, config.prompting, parse_object)
        for row, answer in zip(rows, self.answers(scores, None, None)):
            row.update(answer)
            counts = field_counts(row["reference"], answer["prediction"], kinds, tolerance)
            row["fields"] = {path: {"kind": kinds[path], "counts": found} for path, found in counts.items()}
        return Prediction(rows, {SCHEMA_DETAIL: schema})

    def answers(
        self, scores: Scores, labels: list[str] | None, thresholds: dict[str, float] | None
    ) -> list[dict[str, Any]]:
        """Each answer as an object when it parses and fits the schema ("prediction"; null otherwise), its
        text as generated ("text") and whether it was valid."""
        schema = scores.details.get(SCHEMA_DETAIL) or {}
        found = []
        for text in scores.texts or []:
            answer = validated(text, schema)
            found.append({"prediction": answer, "generated": text, "valid": answer is not None})
        return found

    def metric_inputs(self, rows: list[dict[str, Any]], labels: list[str] | None) -> MetricInputs:
        fields = sorted({path for row in rows for path in row.get("fields", {})})
        kinds = {path: kind["kind"] for row in rows for path, kind in row.get("fields", {}).items()}
        counts = np.zeros((len(rows), 3 * len(fields)))
        for index, row in enumerate(rows):
            for position, path in enumerate(fields):
                found = row.get("fields", {}).get(path)
                if found is not None:
                    counts[index, [position, len(fields) + position, 2 * len(fields) + position]] = found["counts"]
        return MetricInputs(
            references=[canonical(row["reference"]) for row in rows],
            predictions=[canonical(row["prediction"]) if row["valid"] else row["generated"] for row in rows],
            valid=[bool(row["valid"]) for row in rows],
            fields=fields,
            field_kinds=[kinds[path] for path in fields],
            field_counts=counts,
        )


def _fit_problems(
    schema: dict[str, Any], parsed: dict[str, list[dict[str, Any]]], names: dict[str, str], fix: str
) -> list[str]:
    """The first target of each split that does not fit the schema, with the key path. Each distinct target
    is validated once (a dataset of labels has few distinct objects)."""
    from jsonschema.validators import validator_for

    validator = validator_for(schema)(schema)
    problems = []
    for key, objects in parsed.items():
        seen: set[str] = set()
        for row, value in enumerate(objects):
            text = canonical(value)
            if text in seen:
                continue
            seen.add(text)
            error = next(iter(validator.iter_errors(value)), None)
            if error is not None:
                path = ".".join(str(part) for part in error.absolute_path) or "(top)"
                problems.append(
                    f"structured.json_schema: row {row} of split {names[key]!r} does not fit the schema at {path}: "
                    f"{error.message}; {fix}"
                )
                break
    return problems


STRUCTURED = Structured()
