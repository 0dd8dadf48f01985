"""Small splits and configs shared by the data tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Value

from helpers import classification_config
from sft.config import parse_config

LABELS = ["negative", "neutral", "positive"]

FEATURES = Features({"id": Value("int64"), "text": Value("string"), "label": Value("string")})


def rows(count: int, labels: list[str] = LABELS, start: int = 0) -> list[dict[str, Any]]:
    """`count` examples with unique ids and texts, labels cycling through `labels`."""
    return [
        {"id": start + i, "text": f"example number {start + i}", "label": labels[i % len(labels)]} for i in range(count)
    ]


def split(examples: list[dict[str, Any]]) -> Dataset:
    columns = {name: [example[name] for example in examples] for name in FEATURES}
    return Dataset.from_dict(columns, features=FEATURES)


def config(path: Any = "unused-data", **sections: dict[str, Any]):
    return parse_config(classification_config(Path(str(path)), Path("unused-model"), **sections))
