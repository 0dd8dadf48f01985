"""Raw configs for the config tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import classification_config, merge, training_sections


@pytest.fixture
def raw() -> dict[str, Any]:
    """A valid zero-shot config; the paths need not exist for the schema."""
    return classification_config(Path("data/sentiment"), Path("models/tiny"))


@pytest.fixture
def trained_raw(raw) -> dict[str, Any]:
    return merge(raw, training_sections(shots=4))
