"""Request shapes and limits (sft.serving.payload): every accepted shape gives the same examples, every
refused one a message naming the problem and a 4xx status."""

from __future__ import annotations

import pytest

from sft.serving.payload import InputError, Limits, examples_of, inputs_of, limits_of, parse_json

ONE = ["text"]
TWO = ["title", "text"]


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"text": "a"}, ["a"]),
        ({"text": ["a", "b"]}, ["a", "b"]),
        (["a", "b"], ["a", "b"]),
        ({"text": {"text": "a"}}, [{"text": "a"}]),
    ],
)
def test_accepted_shapes(body, expected):
    assert inputs_of(body) == expected
    assert examples_of(inputs_of(body), ONE, Limits()) == [{"text": "a"}, {"text": "b"}][: len(expected)]


def test_several_columns_need_objects_with_exactly_those_columns():
    assert examples_of([{"title": "t", "text": "x"}], TWO, Limits()) == [{"title": "t", "text": "x"}]
    with pytest.raises(InputError, match=r"reads the columns \['title', 'text'\]"):
        examples_of(["x"], TWO, Limits())
    with pytest.raises(InputError, match=r"missing \['title'\], unknown \['body'\]"):
        examples_of([{"text": "x", "body": "y"}], TWO, Limits())
    with pytest.raises(InputError, match="column 'title' must be a string, got int"):
        examples_of([{"title": 1, "text": "x"}], TWO, Limits())


@pytest.mark.faults
@pytest.mark.parametrize(
    "body, status",
    [({"texts": "a"}, 422), ("a", 422), (3, 422), ({"text": "a", "extra": 1}, 422)],
)
def test_refused_shapes(body, status):
    with pytest.raises(InputError) as caught:
        inputs_of(body)
    assert caught.value.status == status


@pytest.mark.faults
def test_limits():
    limits = Limits(max_inputs=2, max_bytes=20, max_chars=3)
    with pytest.raises(InputError, match="no inputs"):
        examples_of([], ONE, limits)
    assert examples_of([], ONE) == []  # the Python API takes an empty list
    with pytest.raises(InputError, match="3 inputs; the limit is 2") as caught:
        examples_of(["a", "b", "c"], ONE, limits)
    assert caught.value.status == 413
    with pytest.raises(InputError, match="4 characters; the limit is 3"):
        examples_of(["abcd"], ONE, limits)
    with pytest.raises(InputError, match="the limit is 20") as caught:
        parse_json(b'{"text": "' + b"a" * 20 + b'"}', limits)
    assert caught.value.status == 413
    with pytest.raises(InputError, match="not valid JSON") as caught:
        parse_json(b"{", limits)
    assert caught.value.status == 400
    assert limits_of(None, 5) == Limits(max_bytes=5)
