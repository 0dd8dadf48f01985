"""What the tests share: raw-config builders here, and beside them one module per area (`helpers.report`,
`helpers.runner`, ...). Tests import their helpers from this package and never from each other."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
INSTRUCTION = "Classify the sentiment of the product review as negative, neutral or positive."


def classification_config(data: Path, model: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A raw config for the sentiment data; `sections` are merged into the defaults, one level deep."""
    config = {
        "dataset": {"path": str(data), "task_type": "classification", "shots": 0},
        "model": {"name": str(model)},
        "prompting": {"instruction": INSTRUCTION, "input_columns": ["text"], "output_column": "label"},
        "inference": {"batch_size": 8},
    }
    return merge(config, sections)


def training_sections(shots: int = 2, epochs: int = 1) -> dict[str, Any]:
    return {
        "dataset": {"shots": shots},
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear"},
        "training": {
            "trainer_args": {"num_train_epochs": epochs, "per_device_train_batch_size": 4, "learning_rate": 1e-3}
        },
    }


def merge(config: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


def icl_sampler(pool: Any, column: str, labels: list[str] | None, seed: int, purpose: str) -> Any:
    """An ICLSampler over `pool`, its examples grouped as a labelled task (per label) or generation (all
    together) groups them."""
    from sft.data.prompts import ICLSampler
    from sft.tasks import TASKS

    if pool is None:
        return ICLSampler(None, [], seed, purpose)
    task = TASKS["classification" if labels else "generation"]
    return ICLSampler(pool, task.example_groups(pool[column], labels), seed, purpose)


def multilabel_examples(count: int, seed: int) -> list[dict]:
    """Reviews made of one or two sentiment sentences; the labels are those of the sentences, listed in
    a shuffled order (sft must put them in label order itself)."""
    rng = random.Random(seed)
    from sft.synthetic import sentiment_examples

    pool = sentiment_examples(count * 2, seed)
    examples = []
    for index in range(count):
        parts = pool[2 * index : 2 * index + (1 if rng.random() < 0.5 else 2)]
        labels = list({part["label"] for part in parts})
        rng.shuffle(labels)
        examples.append({"text": " and ".join(part["text"] for part in parts), "labels": labels})
    return examples


# -- config problems -----------------------------------------------------------------------------------

SOURCE = "cfg.json"  # the file name config errors are prefixed with in the config tests


def problems_of(raw: Any) -> list[str]:
    """Every message of the ConfigError that parsing `raw` raises."""
    import pytest

    from sft.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, SOURCE)
    return caught.value.messages


def only_problem(raw: Any) -> str:
    messages = problems_of(raw)
    assert len(messages) == 1, messages
    return messages[0]
