"""`sft.cli serve` as a real process on 127.0.0.1, called with httpx: the request shapes, 4xx answers
with a message for bad requests (and the server still answering afterwards), 200 concurrent requests
each answered with its own prediction, and a refusal to start on a broken export."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys

import httpx
import pytest
from helpers import REPO

pytestmark = pytest.mark.slow

# generous: the machine running the tests may be busy, and a server's first request warms it up
TIMEOUT = 120


def post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url, timeout=TIMEOUT, **kwargs)


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=TIMEOUT)


TEXTS = ["Great value, works exactly as described.", "Broke after a day.", "It is fine.", "Terrible battery."]


@pytest.fixture(scope="module")
def expected(exports) -> dict[str, dict]:
    """What the Python API predicts for each text."""
    from sft.serving.api import load_export

    model = load_export(exports["classification"])
    return dict(zip(TEXTS, model.predict(TEXTS)))


def assert_answers(answer: dict, texts: list[str], expected: dict[str, dict]) -> None:
    predictions = answer["predictions"]
    assert len(predictions) == len(texts)
    for text, prediction in zip(texts, predictions):
        assert prediction["prediction"] == expected[text]["prediction"]
        for label, probability in expected[text]["probabilities"].items():
            assert prediction["probabilities"][label] == pytest.approx(probability, abs=1e-4)


def test_health_describes_the_model(server):
    health = get(f"{server}/health").json()
    assert health["status"] == "ok"
    assert health["task_type"] == "classification"
    assert health["labels"] == ["negative", "neutral", "positive"]
    assert health["input_columns"] == ["text"]


def test_a_text_a_list_and_a_bare_list(server, expected):
    single = post(f"{server}/predict", json={"text": TEXTS[0]})
    assert single.status_code == 200
    assert_answers(single.json(), TEXTS[:1], expected)
    assert_answers(post(f"{server}/predict", json={"text": TEXTS}).json(), TEXTS, expected)
    assert_answers(post(f"{server}/predict", json=TEXTS[::-1]).json(), TEXTS[::-1], expected)
    as_object = post(f"{server}/predict", json={"text": {"text": TEXTS[1]}})
    assert_answers(as_object.json(), TEXTS[1:2], expected)


@pytest.mark.faults
@pytest.mark.parametrize(
    "body, status, message",
    [
        (b'{"text": ', 400, "not valid JSON"),
        (b'{"text": 3}', 422, "expected a string"),
        (b'{"text": ["ok", null]}', 422, "input 1"),
        (b'{"txt": "hello"}', 422, 'send {"text"'),
        (b'"hello"', 422, 'send {"text"'),
        (b"[]", 422, "no inputs"),
        (b'{"text": {"title": "x"}}', 422, "give exactly the columns"),
        (b'{"text": ["a"' + b', "a"' * 60 + b"]}", 413, "the limit is 50"),
        (b'{"text": "' + b"a" * 30000 + b'"}', 413, "the limit is 20000"),
    ],
    ids=["malformed", "number", "null", "wrong-key", "string", "empty", "unknown-column", "too-many", "too-large"],
)
def test_a_bad_request_gets_a_4xx_with_a_message(server, expected, body, status, message):
    reply = post(f"{server}/predict", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == status, reply.text
    assert message in reply.json()["error"]
    # and the server keeps serving
    assert_answers(post(f"{server}/predict", json={"text": TEXTS[2]}).json(), TEXTS[2:3], expected)


def test_several_input_columns(two_column_server, exports):
    from sft.serving.api import load_export

    inputs = [{"title": "Review A", "text": TEXTS[0]}, {"title": "Review B", "text": TEXTS[1]}]
    wanted = load_export(exports["multilabel"]).predict(inputs)
    reply = post(f"{two_column_server}/predict", json={"text": inputs})
    assert reply.status_code == 200, reply.text
    for mine, theirs in zip(reply.json()["predictions"], wanted):
        assert mine["prediction"] == theirs["prediction"]
        assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-4)
    refused = post(f"{two_column_server}/predict", json={"text": "just a text"})
    assert refused.status_code == 422 and "title" in refused.json()["error"]


def test_200_concurrent_requests_are_batched_and_each_gets_its_answer(server, expected):
    async def all_requests() -> list[tuple[str, httpx.Response]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            texts = [TEXTS[index % len(TEXTS)] for index in range(200)]
            replies = await asyncio.gather(*(client.post(f"{server}/predict", json={"text": t}) for t in texts))
            return list(zip(texts, replies))

    calls_before = get(f"{server}/health").json()["model_calls"]
    answered = asyncio.run(all_requests())
    for text, reply in answered:
        assert reply.status_code == 200, reply.text
        assert_answers(reply.json(), [text], expected)
    calls = get(f"{server}/health").json()["model_calls"] - calls_before
    assert calls < 200  # requests shared model calls (up to inference.batch_size inputs each)


@pytest.mark.faults
def test_the_server_refuses_a_broken_export(exports, tmp_path):
    broken = shutil.copytree(exports["multilabel"], tmp_path / "broken")
    (broken / "model" / "model.safetensors").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "sft.cli", "serve", str(broken), "--port", "9"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no model" in result.stderr
