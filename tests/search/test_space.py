"""The search section's checks before anything runs (`sft.search.space`, `sft.experiment.checks`): keys that
exist, distributions that fit their key, nothing that moves the test split or the labels, a validation split,
a grid no smaller than its trials; every problem at once, each naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import classification_config, merge, training_sections

from sft.config import ConfigError, ExperimentConfig, parse_config
from sft.config.schema import SearchParameter
from sft.experiment.checks import checked_config, library_problems
from sft.search.space import with_values

DATA, MODEL = Path("data"), Path("model")
LOG_RATE = {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}


def searched(space: dict, **search) -> dict:
    raw = merge(classification_config(DATA, MODEL), training_sections(shots=2))
    raw["dataset"]["validation_split"] = "validation"
    raw["training"]["eval_every"] = 1
    return merge(raw, {"search": {"space": space, "trials": 4, **search}})


def problems(raw: dict) -> list[str]:
    try:
        config = checked_config(raw)
    except ConfigError as error:
        return error.messages
    return library_problems({"x": config})


def test_a_valid_search_passes_and_leaves_configs_without_one_unchanged():
    raw = searched({"training.trainer_args.learning_rate": LOG_RATE,
                    "lora.r": {"type": "categorical", "choices": [4, 8, 16]},
                    "training.trainer_args.num_train_epochs": {"type": "int", "low": 1, "high": 3}})  # fmt: skip
    assert problems(raw) == []
    plain = parse_config(merge(classification_config(DATA, MODEL), training_sections()))
    assert "search" not in plain.hashed_settings()


def test_every_problem_is_named_with_its_key_at_once():
    raw = searched(
        {
            "lora.rank": {"type": "categorical", "choices": [4, 8]},
            "lora.lora_dropout": {"type": "float", "low": 0.0, "high": 1.5},
            "lora.r": {"type": "float", "low": 2, "high": 16},
            "training.trainer_args.learning_rate": {"type": "float", "low": -1e-3, "high": 1e-3},
            "dataset.test_split": {"type": "categorical", "choices": ["test", "validation"]},
            "dataset.labels": {"type": "categorical", "choices": ["a"]},
            "training.nonsense": {"type": "int", "low": 1, "high": 2},
        }
    )
    found = "\n".join(problems(raw))
    assert "search.space.lora.lora_dropout: the config refuses 1.5" in found
    assert "search.space.lora.r: the config refuses 2.0 (use type int for an integer key)" in found
    assert "search.space.training.trainer_args.learning_rate: learning_rate must be > 0" in found
    assert "search.space.dataset.test_split: a search may not vary this key: it changes the test split" in found
    assert "search.space.dataset.labels: a search may not vary this key: it changes the labels" in found
    assert "search.space.training.nonsense: no such key" in found
    # a library argument of lora is checked against peft, with the usual alias hint
    assert problems(searched({"lora.rank": {"type": "categorical", "choices": [4, 8]}})) == [
        "[x] search.space.lora.rank: not an argument of peft.LoraConfig (did you mean 'r'?)"
    ]


def test_trainer_arguments_are_checked_by_name_and_type():
    found = problems(searched({"training.trainer_args.learning_rat": LOG_RATE,
                               "training.trainer_args.per_device_train_batch_size": {"type": "float", "low": 2,
                                                                                      "high": 8}}))  # fmt: skip
    text = "\n".join(found)
    assert "search.space.training.trainer_args.learning_rat: not an argument" in text
    assert "per_device_train_batch_size: trl.SFTConfig takes a whole number" in text


def test_a_search_needs_validation_and_training():
    raw = searched({"lora.r": {"type": "categorical", "choices": [4, 8]}})
    del raw["dataset"]["validation_split"]
    del raw["training"]["eval_every"]
    assert any("search: trials are compared on the validation split" in p for p in problems(raw))


def test_a_grid_search_asks_no_more_trials_than_points():
    raw = searched({"lora.r": {"type": "categorical", "choices": [4, 8]},
                    "training.trainer_args.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3}},
                   sampler="grid", trials=3)  # fmt: skip
    text = "\n".join(problems(raw))
    assert "learning_rate: the grid sampler needs finitely many values" in text
    raw["search"]["space"]["training.trainer_args.learning_rate"]["step"] = 9e-4
    assert "search.trials: 3 trials but the grid has only 4 points" not in "\n".join(problems(raw))
    raw["search"]["trials"] = 5
    assert "search.trials: 5 trials but the grid has only 4 points; ask for at most 4" in "\n".join(problems(raw))


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        ({"type": "float", "low": 1}, "needs low and high"),
        ({"type": "float", "low": 0, "high": 1, "log": True}, "log range needs low > 0"),
        ({"type": "int", "low": 1.5, "high": 3}, "whole-number"),
        ({"type": "categorical"}, "needs choices"),
        ({"type": "categorical", "choices": [1], "low": 0}, "takes only choices"),
    ],
)
def test_a_distribution_that_cannot_be_sampled_is_refused(parameter, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(searched({"lora.r": parameter}))


def test_unknown_search_keys_are_refused():
    with pytest.raises(ConfigError, match=r"search\.sampelr: unknown key 'sampelr'"):
        parse_config(searched({"lora.r": {"type": "categorical", "choices": [4]}}, sampelr="tpe"))


def test_a_trial_config_is_the_experiment_with_its_values():
    config = parse_config(searched({"lora.r": {"type": "categorical", "choices": [4, 8]}}))
    trial = with_values(config, {"lora.r": 16, "training.trainer_args.learning_rate": 5e-4})
    assert isinstance(trial, ExperimentConfig)
    assert trial.lora is not None and trial.lora.r == 16
    assert trial.training is not None and trial.training.trainer_args["learning_rate"] == 5e-4
    assert SearchParameter(type="float", low=0.1, high=0.3, step=0.1).points() == [0.1, 0.2, 0.3]
    assert SearchParameter(type="int", low=1, high=5, step=2).points() == [1, 3, 5]
