"""The request and response shapes of the HTTP service and the SageMaker handler, and the checks that
turn a bad request into a clear message (a 4xx answer), never an exception deep in the model.

Requests (JSON):

    {"text": "one text"}                      one input
    {"text": ["a", "b"]}  or  ["a", "b"]      several inputs
    {"text": {"premise": "...", "hypothesis": "..."}}   one input of several input columns
    {"text": [{"premise": ..., "hypothesis": ...}, ...]} or a bare list of such objects

A plain string is an input only when the model has one input column; an object must give exactly the
model's input columns, each a string. The response is `{"predictions": [...]}` with one entry per input,
in order: `{"prediction": label, "probabilities": {label: p}}` for classification, the label list
for multilabel, the generated text (and no probabilities) for generation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

Example = dict[str, str]


class InputError(ValueError):
    """A request the service refuses with this message (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may carry; larger requests are refused with 413."""

    max_inputs: int = 256
    max_bytes: int = 1_000_000
    max_chars: int = 100_000  # per input text


def limits_of(max_inputs: int | None, max_bytes: int | None) -> Limits:
    """The default limits with the ones given replaced (command-line options)."""
    given = {"max_inputs": max_inputs, "max_bytes": max_bytes}
    return Limits(**{key: value for key, value in given.items() if value is not None})


def parse_json(body: bytes | str, limits: Limits) -> Any:
    """The JSON value of a request body; InputError on a too large or malformed body."""
    if len(body) > limits.max_bytes:
        raise InputError(f"the request has {len(body)} bytes; the limit is {limits.max_bytes}", 413)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"the request body is not valid JSON: {error}", 400) from None


def inputs_of(value: Any) -> list[Any]:
    """The list of inputs of a request in any of its shapes (each still to be checked)."""
    if isinstance(value, dict) and set(value) == {"text"}:
        value = value["text"]
        return value if isinstance(value, list) else [value]
    if isinstance(value, list):
        return value
    raise InputError('send {"text": "..."}, {"text": ["...", ...]} or a JSON list of texts')


def examples_of(inputs: list[Any], columns: list[str], limits: Limits | None = None) -> list[Example]:
    """One example (input column -> text) per input; InputError naming the first bad input. Without
    `limits` (the Python API) any number and length of inputs is taken."""
    if not inputs and limits is not None:
        raise InputError("the request has no inputs; send at least one text")
    if limits is not None and len(inputs) > limits.max_inputs:
        raise InputError(f"the request has {len(inputs)} inputs; the limit is {limits.max_inputs}", 413)
    return [_example(value, index, columns, limits) for index, value in enumerate(inputs)]


def _example(value: Any, index: int, columns: list[str], limits: Limits | None) -> Example:
    if isinstance(value, str):
        if len(columns) != 1:
            raise InputError(f"input {index}: this model reads the columns {columns}; send an object with each")
        example = {columns[0]: value}
    elif isinstance(value, dict):
        missing, unknown = sorted(set(columns) - set(value)), sorted(set(value) - set(columns))
        if missing or unknown:
            raise InputError(
                f"input {index}: give exactly the columns {columns} (missing {missing}, unknown {unknown})"
            )
        example = value
    else:
        raise InputError(f"input {index}: expected a string or an object of strings, got {type(value).__name__}")
    for column, text in example.items():
        if not isinstance(text, str):
            raise InputError(f"input {index}: column {column!r} must be a string, got {type(text).__name__}")
        if limits is not None and len(text) > limits.max_chars:
            raise InputError(f"input {index}: {len(text)} characters; the limit is {limits.max_chars}", 413)
    return example


def response(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"predictions": predictions}
