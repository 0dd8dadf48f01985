"""SageMaker inference handler: the four functions the SageMaker inference toolkit calls, over the same
API and request shapes as `serve` (`sft.serving.payload`).

Package an export as `model.tar.gz` with the export's files at its root and a `code/inference.py`
that re-exports these functions (docs/serving.md, "Serving on SageMaker"). The toolkit then calls
`model_fn(model_dir)` once, and per request `input_fn(body, content_type)`, `predict_fn(data, model)`
and `output_fn(prediction, accept)`. A bad request raises `InputError` (a ValueError) with its message.
"""

from __future__ import annotations

import json
from typing import Any

from sft.serving.api import load_export
from sft.serving.payload import InputError, Limits, examples_of, inputs_of, parse_json, response

JSON = "application/json"
LIMITS = Limits()


def model_fn(model_dir: str) -> Any:
    """The exported model in `model_dir` (the unpacked model.tar.gz), checked before loading."""
    return load_export(model_dir)


def input_fn(request_body: bytes | str, request_content_type: str = JSON) -> list[Any]:
    """The inputs of a JSON request: {"text": ...}, {"text": [...]} or a bare list."""
    if (request_content_type or JSON).split(";")[0].strip() != JSON:
        raise InputError(f"content type {request_content_type!r} is not supported; send {JSON}", 415)
    return inputs_of(parse_json(request_body, LIMITS))


def predict_fn(input_data: list[Any], model: Any) -> dict[str, Any]:
    """{"predictions": [...]}: one prediction per input, labels with their probabilities."""
    return response(model.predict(examples_of(input_data, model.input_columns, LIMITS)))


def output_fn(prediction: dict[str, Any], accept: str = JSON) -> str:
    """The prediction as JSON (the only response type)."""
    if accept not in (None, "", "*/*") and JSON not in accept:
        raise InputError(f"accept type {accept!r} is not supported; accept {JSON}", 406)
    return json.dumps(prediction, ensure_ascii=False)
