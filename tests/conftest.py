"""Shared fixtures: tiny random-weight models and small datasets built offline, saved to temp folders and
loaded through the same `from_pretrained` / `load_dataset` paths a hub id takes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, classification_config, merge, training_sections

# Nothing may be downloaded: fail fast instead of waiting on the network.
for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[variable] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("assets")


@pytest.fixture(scope="session")
def tiny_llama(assets) -> Path:
    """A 2-layer Llama with a Llama-3 style chat template (BOS in the template, <|eot_id|> ends turns)."""
    from sft.synthetic import save_tiny_model

    return save_tiny_model(assets / "tiny-llama", architecture="llama", style="llama3", seed=1)


@pytest.fixture(scope="session")
def tiny_qwen(assets) -> Path:
    """A 2-layer Qwen2 with a ChatML template."""
    from sft.synthetic import save_tiny_model

    return save_tiny_model(assets / "tiny-qwen2", architecture="qwen2", style="chatml", seed=2)


@pytest.fixture(scope="session")
def tiny_no_system(assets) -> Path:
    """A Qwen2 whose chat template raises on a system turn, as Gemma's does."""
    from sft.synthetic import save_tiny_model

    return save_tiny_model(assets / "tiny-no-system", architecture="qwen2", style="chatml_no_system", seed=3)


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny_model(request, tiny_llama, tiny_qwen) -> Path:
    return tiny_llama if request.param == "llama" else tiny_qwen


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model):
    """(model, tokenizer) of `tiny_model`, loaded once, in float32 eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def sentiment_data(assets) -> Path:
    """A data folder with train/validation/test JSON Lines splits of 3-label product reviews."""
    from sft.synthetic import sentiment_examples, write_splits

    return write_splits(
        assets / "sentiment",
        {
            "train": sentiment_examples(90, seed=1),
            "validation": sentiment_examples(30, seed=2),
            "test": sentiment_examples(24, seed=3),
        },
    )


@pytest.fixture(scope="session")
def translation_data(assets) -> Path:
    from sft.synthetic import translation_examples, write_splits

    return write_splits(
        assets / "translation",
        {"train": translation_examples(40, seed=1), "test": translation_examples(8, seed=2)},
    )


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def raw() -> dict[str, Any]:
    """A valid zero-shot config as a user writes it; the paths need not exist for the config checks."""
    return classification_config(Path("data/sentiment"), Path("models/tiny"))


@pytest.fixture
def trained_raw(raw) -> dict[str, Any]:
    """`raw` with shots, a LoRA section and training settings."""
    return merge(raw, training_sections(shots=4))
