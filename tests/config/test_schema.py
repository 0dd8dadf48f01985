"""sft.config.schema: defaults, value ranges and types, cross-field rules, LoRA initializations, the config hash."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from helpers import SOURCE, merge, only_problem

from sft.config import ExperimentConfig, InferenceConfig, config_hash, parse_config

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
# (a name neither PEFT's nor sft's is refused by sft.experiment.checks: tests/experiment/test_checks.py)


@pytest.mark.parametrize("value", ["pissa_niter_4", "pissa_niter_16", "gaussian", "olora", "pissa", True, False])
def test_known_lora_initializations_are_accepted(trained_raw, value):
    trained_raw["lora"]["init_lora_weights"] = value
    assert parse_config(trained_raw, SOURCE).lora.init_lora_weights == value


@pytest.mark.parametrize(
    ("value", "custom"),
    [("umap", "umap"), ("mine", "mine"), ("pissa_niter_", "pissa_niter_"), ("pissa_residual", None),
     ("pissa_niter_4", None), (True, None)],
)  # fmt: skip
def test_every_name_that_is_not_peft_s_names_an_sft_initializer(trained_raw, value, custom):
    trained_raw["lora"]["init_lora_weights"] = value
    assert parse_config(trained_raw, SOURCE).lora.custom_initializer == custom


def test_normalization_is_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        InferenceConfig(normalization="median")
    assert InferenceConfig().normalization == "sum"


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


def test_typed_placement_arguments_keep_the_hash_they_had_as_free_model_args(raw):
    """model_args.parallelize / no_split_module_classes became typed fields: a config that sets them hashes
    the same settings as before (so its results still resume), and one that does not hashes none of them."""
    raw = merge(raw, {"model": {"model_args": {"parallelize": True, "attn_implementation": "eager"}}})
    config = parse_config(raw, SOURCE)
    assert config.hashed_settings()["model"]["model_args"] == {"parallelize": True, "attn_implementation": "eager"}
    assert config.model.model_args.from_pretrained_args() == {"attn_implementation": "eager"}
    plain = parse_config(merge(raw, {"model": {"model_args": {}}}), SOURCE)
    assert "model_args" not in plain.hashed_settings()["model"]
    assert (
        plain.config_hash()
        == parse_config(merge(raw, {"model": {"model_args": {"parallelize": False}}}), SOURCE).config_hash()
    )


def test_derived_values_are_methods_of_the_config(raw):
    config = parse_config(raw, SOURCE)
    assert config.resources.processes() == 1  # the python launcher
    accelerate = config.resources.model_copy(update={"launcher": "accelerate"})
    assert accelerate.processes() == 2 and accelerate.processes(gpus=4) == 4
    assert accelerate.model_copy(update={"num_processes": 3}).processes(gpus=4) == 3
    calibration = config.inference.calibration_args
    assert calibration.domain_estimations() == 20
    assert calibration.model_copy(update={"num_estimations": 5}).domain_estimations() == 5
