"""sft.config.parsing: raw values to an ExperimentConfig, with messages that name the key path and suggest the
fix, every problem reported at once, and the sections each single-experiment command needs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from helpers import SOURCE, merge, only_problem

from sft.config import ConfigError, check_command, parse_config


def test_non_object_config_is_rejected():
    for value in ([1, 2], "config", None):
        message = only_problem(value)
        assert message.startswith(f"{SOURCE}: a config must be an object")


# --- unknown keys -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "suggestion"),
    [
        ("dataset", "shot", "shots"),
        ("inference", "batch", "batch_size"),
        ("prompting", "input_column", "input_columns"),
        ("training", "trainer_arg", "trainer_args"),
        ("model", "chat_templat", "chat_template"),
    ],
)
def test_unknown_key_names_its_path_and_suggests_a_close_key(trained_raw, section, key, suggestion):
    raw = copy.deepcopy(trained_raw)
    raw[section][key] = 1

    message = only_problem(raw)
    assert message.startswith(f"{SOURCE}: {section}.{key}: unknown key {key!r}")
    assert f"did you mean {suggestion!r}?" in message
    assert suggestion in message.split("Known keys here:")[1]


def test_unknown_top_level_section_suggests_the_section(raw):
    raw["evalution"] = {"ece_bins": 5}
    message = only_problem(raw)
    assert message.startswith(f"{SOURCE}: evalution: unknown key 'evalution'")
    assert "did you mean 'evaluation'?" in message


def test_unknown_key_without_a_close_match_lists_the_known_keys(raw):
    raw["dataset"]["zzzzzz"] = 1
    message = only_problem(raw)
    assert "dataset.zzzzzz" in message
    assert "did you mean" not in message
    assert "Known keys here: path, args, task_type, shots" in message


def test_unknown_key_in_a_nested_section_names_the_full_path(raw):
    raw["model"]["quantization"] = {"config_class": "BitsAndBytesConfig", "arg": {}}
    message = only_problem(raw)
    assert message.startswith(f"{SOURCE}: model.quantization.arg: unknown key 'arg'")
    assert "did you mean 'args'?" in message


# --- every problem at once --------------------------------------------------------------------------------------------


def test_every_problem_is_reported_in_one_error(raw):
    raw["dataset"]["shot"] = 2
    raw["dataset"]["shots"] = -1
    raw["inference"]["batch_size"] = "eight"
    del raw["prompting"]["output_column"]
    raw["evalution"] = {}

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, SOURCE)
    error = caught.value

    expected_paths = ["dataset.shot", "dataset.shots", "inference.batch_size", "prompting.output_column", "evalution"]
    assert len(error.messages) == len(expected_paths), error.messages
    for path in expected_paths:
        assert sum(message.startswith(f"{SOURCE}: {path}: ") for message in error.messages) == 1, path
    assert "prompting.output_column: required key is missing" in str(error)
    assert str(error).startswith("5 problems found in the config:")


def test_config_error_text_lists_each_message():
    error = ConfigError(["a: first", "b: second"])
    assert str(error).splitlines() == ["2 problems found in the config:", "  - a: first", "  - b: second"]
    assert str(ConfigError(["only"])).startswith("1 problem found")


# --- what each command needs ------------------------------------------------------------------------------------------


def without(raw: dict[str, Any], *sections: str) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key not in sections}


@pytest.mark.parametrize("command", ["train", "run-experiment"])
def test_training_commands_accept_a_complete_few_shot_config(trained_raw, command):
    assert check_command(parse_config(trained_raw, SOURCE), command) == []


@pytest.mark.parametrize("command", ["train", "run-experiment"])
@pytest.mark.parametrize("missing", [("lora",), ("training",), ("lora", "training")])
def test_training_commands_need_lora_and_training_when_shots_are_positive(trained_raw, command, missing):
    problems = check_command(parse_config(without(trained_raw, *missing), SOURCE), command)
    assert len(problems) == len(missing), problems
    for section, problem in zip(missing, problems):
        assert problem.startswith(f"{section}: ")
        assert f"`{command}`" in problem
        assert f'"{section}":' in problem  # an example of the section to add


@pytest.mark.parametrize("command", ["run-experiment", "predict", "evaluate"])
def test_zero_shot_needs_no_lora_or_training(raw, command):
    assert check_command(parse_config(raw, SOURCE), command) == []


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_inference_commands_do_not_need_training_sections(trained_raw, command):
    config = parse_config(without(trained_raw, "lora", "training"), SOURCE)
    assert check_command(config, command) == []


def test_train_with_zero_shots_is_a_problem(raw):
    config = parse_config(merge(raw, {"lora": {}, "training": {}}), SOURCE)
    problems = check_command(config, "train")
    assert len(problems) == 1, problems
    assert problems[0].startswith("dataset.shots: ")
    assert "shots > 0" in problems[0]


def test_train_with_zero_shots_is_a_problem_even_without_lora(raw):
    problems = check_command(parse_config(raw, SOURCE), "train")
    assert any(problem.startswith("dataset.shots: ") for problem in problems), problems


def test_schema_defaults_by_key():
    from sft.config.parsing import NO_DEFAULT, differs_from_default, schema_default

    assert schema_default("lora.r") == 8
    assert schema_default("dataset.test_split") == "test"  # inside a required section
    assert schema_default("inference.generation_args.max_new_tokens") == 64  # inside a dict default
    assert schema_default("inference.calibration_args.content_free_inputs") == ["N/A", "", "[MASK]"]
    assert schema_default("model.model_args.parallelize") is False
    for key in ("dataset.path", "model.name", "training.trainer_args.learning_rate", "lora.no_such_key"):
        assert schema_default(key) is NO_DEFAULT, key
    assert not differs_from_default("lora.lora_alpha", 16.0)  # a float field's default written as an int
    assert differs_from_default("lora.init_lora_weights", 1)  # 1 is not True
    assert differs_from_default("model.name", "x") and differs_from_default("lora.r", 16)
