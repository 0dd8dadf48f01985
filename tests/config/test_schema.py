"""The config schema (sft/config.py): defaults, error messages, cross-field rules, command checks, hashing."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import classification_config, merge, training_sections

from sft.config import ConfigError, ExperimentConfig, check_command, config_hash, parse_config
from sft.config.schema import PEFT_INITIALIZATIONS

SOURCE = "cfg.json"


@pytest.fixture
def raw() -> dict[str, Any]:
    """A valid zero-shot config; the paths need not exist for the schema."""
    return classification_config(Path("data/sentiment"), Path("models/tiny"))


@pytest.fixture
def trained_raw(raw) -> dict[str, Any]:
    return merge(raw, training_sections(shots=4))


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, SOURCE)
    return caught.value.messages


def only_problem(raw: Any) -> str:
    messages = problems_of(raw)
    assert len(messages) == 1, messages
    return messages[0]


# --- a valid config and its defaults ---------------------------------------------------------------------------


def test_valid_config_gets_every_default(raw):
    del raw["inference"]
    config = parse_config(raw, SOURCE)

    assert isinstance(config, ExperimentConfig)
    assert config.dataset.shots == 0
    assert config.dataset.task_type == "classification"
    assert (config.dataset.train_split, config.dataset.test_split) == ("train", "test")
    assert config.dataset.validation_split is None
    assert config.model.dtype == "auto"
    assert config.model.trust_remote_code is False
    assert config.lora is None and config.training is None
    assert config.inference.batch_size == 8
    assert config.inference.icl_examples == 0
    assert config.inference.generation_args == {"max_new_tokens": 64}
    assert config.evaluation.ece_bins == 10
    assert config.evaluation.bleu_tokenize == "13a"
    assert config.trains is False


def test_lora_defaults(raw):
    config = parse_config(merge(raw, {"dataset": {"shots": 2}, "lora": {}, "training": {}}), SOURCE)

    lora = config.lora
    assert lora.task_type == "CAUSAL_LM"
    assert lora.r == 8
    assert lora.lora_alpha == 16
    assert lora.lora_dropout == 0.0
    assert lora.target_modules == "all-linear"
    assert lora.bias == "none"
    assert lora.init_lora_weights is True
    assert lora.use_rslora is False and lora.use_dora is False
    assert config.training.icl_examples == 0
    assert config.training.trainer_args == {}
    assert config.trains is True


def test_generation_args_default_is_not_shared_between_configs(raw):
    first = parse_config(raw, SOURCE)
    first.inference.generation_args["max_new_tokens"] = 1
    assert parse_config(raw, SOURCE).inference.generation_args == {"max_new_tokens": 64}


def test_resolved_config_is_itself_a_valid_config_with_the_same_hash(trained_raw):
    config = parse_config(trained_raw, SOURCE)
    resolved = config.resolved()

    again = parse_config(json.loads(json.dumps(resolved)), SOURCE)
    assert again == config
    assert again.config_hash() == config.config_hash()


def test_non_object_config_is_rejected():
    for value in ([1, 2], "config", None):
        message = only_problem(value)
        assert message.startswith(f"{SOURCE}: a config must be an object")


# --- unknown keys -------------------------------------------------------------------------------------------------


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


def test_unknown_lora_key_is_reported_with_the_close_peft_argument(trained_raw):
    """`lora` passes extra keys on to peft.LoraConfig; the full validation checks them against peft.

    `rank` is the usual name of LoRA's `r`: a researcher writing it must be pointed at `r`."""
    from sft.config.validation import library_problems

    raw = copy.deepcopy(trained_raw)
    del raw["lora"]["r"]
    raw["lora"]["rank"] = 4
    raw["lora"]["use_rslor"] = True
    problems = library_problems({"exp": parse_config(raw, SOURCE)})

    assert len(problems) == 2, problems
    rank = next(p for p in problems if "lora.rank" in p)
    assert "did you mean 'r'?" in rank
    rslora = next(p for p in problems if "lora.use_rslor" in p)
    assert "did you mean 'use_rslora'?" in rslora


# --- every problem at once -----------------------------------------------------------------------------------------


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


# --- values -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("dataset", "shots", -1),
        ("dataset", "max_n_test", 0),
        ("inference", "batch_size", 0),
        ("inference", "icl_examples", -2),
    ],
)
def test_out_of_range_numbers_are_rejected(raw, section, key, value):
    raw[section][key] = value
    message = only_problem(raw)
    assert message.startswith(f"{SOURCE}: {section}.{key}: ")
    assert f"(got {value})" in message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("dataset", "shots", "many"),
        ("dataset", "task_type", "regression"),
        ("inference", "batch_size", [8]),
        ("prompting", "input_columns", {"text": 1}),
        ("model", "trust_remote_code", "perhaps"),
        ("model", "dtype", "float8"),
    ],
)
def test_wrong_type_names_the_path_and_the_value(raw, section, key, value):
    raw[section][key] = value
    message = only_problem(raw)
    assert message.startswith(f"{SOURCE}: {section}.{key}")
    assert json.dumps(value) in message


def test_empty_input_columns_are_rejected(raw):
    raw["prompting"]["input_columns"] = []
    assert only_problem(raw).startswith(f"{SOURCE}: prompting.input_columns: ")


@pytest.mark.parametrize("labels", [["positive"], ["positive", "negative", "positive"]])
def test_labels_must_be_unique_and_at_least_two(raw, labels):
    raw["dataset"]["labels"] = labels
    assert only_problem(raw).startswith(f"{SOURCE}: dataset.labels: ")


# --- cross-field rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "field"),
    [("trust_remote_code", "model.trust_remote_code"), ("torch_dtype", "model.dtype"), ("revision", "model.revision")],
)
def test_model_args_cannot_shadow_a_model_field(raw, key, field):
    raw["model"]["model_args"] = {key: True, "attn_implementation": "eager"}
    message = only_problem(raw)
    assert "model.model_args" in message and key in message and field in message


def test_chat_template_and_chat_template_from_together_are_rejected(raw):
    raw["model"]["chat_template"] = "{{ messages }}"
    raw["model"]["chat_template_from"] = "models/other"
    message = only_problem(raw)
    assert message.startswith(f"{SOURCE}: model: ")
    assert "chat_template and chat_template_from" in message


@pytest.mark.parametrize("key", ["chat_template", "chat_template_from"])
def test_one_chat_template_source_is_accepted(raw, key):
    raw["model"][key] = "templates/chat.jinja"
    assert getattr(parse_config(raw, SOURCE).model, key) == "templates/chat.jinja"


def test_output_column_among_input_columns_is_rejected(raw):
    raw["prompting"]["input_columns"] = ["text", "label"]
    message = only_problem(raw)
    assert message.startswith(f"{SOURCE}: prompting: ")
    assert "output_column 'label' is also an input column" in message


def test_input_template_placeholders_must_be_input_columns(raw):
    raw["prompting"]["input_columns"] = ["premise", "hypothesis"]
    raw["prompting"]["input_template"] = "Premise: {premise}\nHypothesis: {hypothesis}\nTopic: {topic} {genre}"
    message = only_problem(raw)
    assert message.startswith(f"{SOURCE}: prompting: ")
    assert "['genre', 'topic']" in message
    assert "hypothesis" not in message.split("which are not in")[0]


@pytest.mark.parametrize("template", ["Premise: {premise}\nHypothesis: {hypothesis}", "{premise} {{literal braces}}"])
def test_input_template_with_input_columns_only_is_accepted(raw, template):
    raw["prompting"]["input_columns"] = ["premise", "hypothesis"]
    raw["prompting"]["input_template"] = template
    assert parse_config(raw, SOURCE).prompting.input_template == template


# --- LoRA initialization ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["gausian", "pissa_niter_", "pissa_niterx", "PISSA", "random"])
def test_unknown_lora_initialization_is_rejected_with_the_choices(trained_raw, value):
    trained_raw["lora"]["init_lora_weights"] = value
    message = only_problem(trained_raw)
    assert message.startswith(f"{SOURCE}: lora.init_lora_weights: unknown initialization {value!r}")
    choices = message.split("choose from ")[1]
    for name in [*PEFT_INITIALIZATIONS, "pissa_niter_<n>"]:
        assert name in choices


def test_misspelt_lora_initialization_gets_a_suggestion(trained_raw):
    trained_raw["lora"]["init_lora_weights"] = "gausian"
    assert "did you mean 'gaussian'?" in only_problem(trained_raw)


@pytest.mark.parametrize("value", ["pissa_niter_4", "pissa_niter_16", "gaussian", "olora", "pissa", True, False])
def test_known_lora_initializations_are_accepted(trained_raw, value):
    trained_raw["lora"]["init_lora_weights"] = value
    assert parse_config(trained_raw, SOURCE).lora.init_lora_weights == value


# --- what each command needs --------------------------------------------------------------------------------------


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


# --- the config hash ----------------------------------------------------------------------------------------------


def reorder(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {key: reorder(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(item) for item in value]
    return value


def test_config_hash_is_stable_and_ignores_key_order(trained_raw):
    first = parse_config(trained_raw, SOURCE).config_hash()
    assert parse_config(copy.deepcopy(trained_raw), SOURCE).config_hash() == first
    reordered = reorder(trained_raw)
    assert list(reordered) != list(trained_raw)
    assert parse_config(reordered, SOURCE).config_hash() == first
    assert len(first) == 64 and int(first, 16) >= 0


def test_config_hash_is_sha256_of_the_canonical_non_default_settings(trained_raw):
    trained_raw["prompting"]["instruction"] = "Classez la critique : négative, neutre ou positive."
    config = parse_config(trained_raw, SOURCE)
    settings = config.hashed_settings()
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert config.config_hash() == hashlib.sha256(canonical.encode("ascii")).hexdigest()
    assert config_hash(reorder(settings)) == config.config_hash()
    # sections left at their defaults are not hashed, so a field added to them later keeps old hashes
    assert "resources" not in settings and "evaluation" not in settings
    assert settings["prompting"]["instruction"].startswith("Classez")
    assert "max_input_length" not in settings["prompting"]


def test_spelling_out_a_default_does_not_change_the_hash(raw):
    explicit = merge(raw, {"inference": {"batch_size": 8, "icl_examples": 0}, "evaluation": {"ece_bins": 10}})
    assert parse_config(explicit, SOURCE).config_hash() == parse_config(raw, SOURCE).config_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"dataset": {"shots": 5}},
        {"dataset": {"max_n_test": 100}},
        {"dataset": {"args": {"name": "sentiment"}}},
        {"dataset": {"labels": ["positive", "neutral", "negative"]}},
        {"model": {"name": "models/other"}},
        {"model": {"dtype": "bfloat16"}},
        {"prompting": {"instruction": "Classify."}},
        {"prompting": {"max_input_length": 64}},
        {"lora": {"r": 16}},
        {"lora": {"init_lora_weights": "gaussian"}},
        {"lora": {"rank_pattern": {"q_proj": 2}}},
        {"training": {"trainer_args": {"num_train_epochs": 2}}},
        {"training": {"icl_examples": 1}},
        {"inference": {"batch_size": 4}},
        {"inference": {"generation_args": {"max_new_tokens": 65}}},
        {"evaluation": {"ece_bins": 15}},
    ],
)
def test_config_hash_changes_with_any_setting(trained_raw, change):
    trained_raw["dataset"]["labels"] = ["negative", "neutral", "positive"]
    base = parse_config(trained_raw, SOURCE)
    changed_config = parse_config(merge(trained_raw, change), SOURCE)
    assert changed_config.resolved() != base.resolved()
    assert changed_config.config_hash() != base.config_hash()


def leaf_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, dict) and value:
        return [path for key, inner in value.items() for path in leaf_paths(inner, (*prefix, key))]
    return [prefix]


def test_config_hash_covers_every_leaf_of_the_resolved_config(trained_raw):
    resolved = parse_config(trained_raw, SOURCE).resolved()
    reference = config_hash(resolved)
    paths = leaf_paths(resolved)
    assert len(paths) > 40
    for path in paths:
        changed = copy.deepcopy(resolved)
        target = changed
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = ["changed", target[path[-1]]]
        assert config_hash(changed) != reference, path
