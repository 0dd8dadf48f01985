"""sft.config.grid: the three shapes of a grid file, derived names, grid-level errors, JSONNET external variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import classification_config, merge, training_sections

from sft.config import ConfigError
from sft.config.grid import derived_name, evaluate_file, load_experiments, load_single, parse_ext_vars
from sft.results.layout import check_name

DATA = Path("data/sentiment")
MODEL = Path("models/tiny")


def config(**sections: Any) -> dict[str, Any]:
    return classification_config(DATA, MODEL, **sections)


def few_shot(shots: int = 2, **sections: Any) -> dict[str, Any]:
    return merge(config(**training_sections(shots=shots)), sections)


def write(path: Path, value: Any) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value, indent=2), encoding="utf-8")
    return path


def problems(path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_experiments(path, **kwargs)
    return caught.value.messages


# --- the three shapes of a grid file ------------------------------------------------------------------------------


def test_configs_object_gives_the_explicit_names(tmp_path):
    grid = {"configs": {"zero-shot": config(), "few-shot": few_shot(4), "few-shot-r16": few_shot(4, lora={"r": 16})}}
    path = write(tmp_path / "grid.jsonnet", json.dumps(grid))

    configs = load_experiments(path)

    assert sorted(configs) == ["few-shot", "few-shot-r16", "zero-shot"]
    assert configs["zero-shot"].dataset.shots == 0
    assert configs["few-shot"].dataset.shots == 4
    assert configs["few-shot"].lora.r == 4
    assert configs["few-shot-r16"].lora.r == 16


def test_jsonnet_code_is_evaluated(tmp_path):
    path = write(
        tmp_path / "grid.jsonnet",
        f"""
        local base = {json.dumps(config())};
        {{
          configs: {{
            [std.format('shots%d', [shots])]: base + {{ dataset+: {{ shots: shots }} }}
            for shots in [0, 8, 32]
          }},
        }}
        """,
    )
    configs = load_experiments(path)
    assert {name: c.dataset.shots for name, c in configs.items()} == {"shots0": 0, "shots8": 8, "shots32": 32}
    assert all(c.dataset.path == str(DATA) for c in configs.values())


def test_plain_json_config_is_one_experiment_named_after_the_file(tmp_path):
    path = write(tmp_path / "my-experiment_v2.json", few_shot(3))
    configs = load_experiments(path)
    assert list(configs) == ["my-experiment_v2"]
    assert configs["my-experiment_v2"].dataset.shots == 3


def test_json_file_may_hold_a_grid(tmp_path):
    path = write(tmp_path / "grid.json", {"configs": {"a": config(), "b": few_shot()}})
    assert sorted(load_experiments(path)) == ["a", "b"]


def list_grid() -> list[dict[str, Any]]:
    return [
        config(),
        few_shot(2),
        few_shot(8),
        few_shot(8, lora={"r": 16}),
        config(prompting={"instruction": "Rate the review.", "input_columns": ["text"], "output_column": "label"}),
    ]


def test_list_gives_distinct_derived_names(tmp_path):
    configs = load_experiments(write(tmp_path / "grid.jsonnet", json.dumps(list_grid())))

    assert len(configs) == len(list_grid())
    hashes = {config.config_hash() for config in configs.values()}
    assert len(hashes) == len(configs)
    for name, experiment in configs.items():
        assert check_name(name) is None, name
        assert f"shots{experiment.dataset.shots}" in name
        assert "sentiment" in name and "tiny" in name


def test_derived_names_are_stable_when_the_list_is_reordered(tmp_path):
    forward = load_experiments(write(tmp_path / "forward.jsonnet", json.dumps(list_grid())))
    backward = load_experiments(write(tmp_path / "backward.jsonnet", json.dumps(list_grid()[::-1])))
    rotated = load_experiments(write(tmp_path / "rotated.jsonnet", json.dumps(list_grid()[2:] + list_grid()[:2])))

    expected = {name: config.config_hash() for name, config in forward.items()}
    assert {name: config.config_hash() for name, config in backward.items()} == expected
    assert {name: config.config_hash() for name, config in rotated.items()} == expected


def test_identical_configs_in_a_list_are_reported_not_merged(tmp_path):
    grid = [config(), few_shot(), config()]

    found = problems(write(tmp_path / "grid.jsonnet", json.dumps(grid)))

    assert len(found) == 1 and "positions 0 and 2 are identical" in found[0]


def test_derived_name_differs_for_configs_differing_only_in_an_unnamed_setting():
    first = few_shot(8)
    second = few_shot(8, inference={"batch_size": 4})
    assert derived_name(first, 0) != derived_name(second, 0)
    assert derived_name(first, 0) == derived_name(json.loads(json.dumps(first)), 5)


@pytest.mark.parametrize(
    ("dataset_path", "model_name"),
    [
        ("cardiffnlp/tweet_eval", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("data/", "models/my model (v2)/"),
        ("../shared/data/reviews", "./checkpoints/.."),
        ("/", "ünïcode-模型"),
        ("data/reviews..2024", "org/Model..v2"),
    ],
)
def test_derived_names_are_always_safe_folder_names(tmp_path, dataset_path, model_name):
    raw = merge(config(dataset={"path": dataset_path}), {"model": {"name": model_name}})
    configs = load_experiments(write(tmp_path / "grid.jsonnet", json.dumps([raw, few_shot(2)])))
    assert len(configs) == 2
    for name in configs:
        assert check_name(name) is None


# --- grid-level errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"configs": {}}, "non-empty"),
        ({"configs": [1]}, "non-empty"),
        ([], "empty"),
        ({"configs": {"a": {}}, "seeds": [1]}, "['seeds']"),
        (3, "expected a config object"),
    ],
)
def test_malformed_grid_shapes_are_rejected(tmp_path, value, fragment):
    path = write(tmp_path / "grid.jsonnet", json.dumps(value))
    [message] = problems(path)
    assert message.startswith(str(path))
    assert fragment in message


def test_missing_file_is_a_config_error(tmp_path):
    [message] = problems(tmp_path / "nowhere.jsonnet")
    assert "nowhere.jsonnet" in message and "no such file" in message


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "a\\b", "-dash", "", "x" * 201])
def test_unsafe_experiment_names_are_rejected(tmp_path, name):
    path = write(tmp_path / "grid.jsonnet", json.dumps({"configs": {name: config(), "fine": config()}}))
    messages = problems(path)
    assert len(messages) == 1, messages
    assert f"experiment name {name!r} is not a safe folder name" in messages[0]


def test_problems_across_experiments_are_all_reported_together(tmp_path):
    grid = {
        "configs": {
            "good": config(),
            "typo": config(dataset={"shot": 2}),
            "negative": config(dataset={"shots": -1}, inference={"batch_size": 0}),
            "../escape": config(),
            "no-lora": merge(few_shot(4), {"lora": None}),
        }
    }
    path = write(tmp_path / "grid.jsonnet", json.dumps(grid))

    messages = problems(path, command="run-experiment")

    assert len(messages) == 5, messages

    def of(name: str) -> list[str]:
        return [message for message in messages if message.startswith(f"{path} [{name}]: ")]

    assert of("good") == []
    assert len(of("typo")) == 1 and "dataset.shot" in of("typo")[0] and "'shots'" in of("typo")[0]
    assert sorted(m.split(": ")[1] for m in of("negative")) == ["dataset.shots", "inference.batch_size"]
    assert len(of("../escape")) == 1 and "safe folder name" in of("../escape")[0]
    assert len(of("no-lora")) == 1 and "lora: this section is required" in of("no-lora")[0]


def test_without_a_command_sections_are_not_required(tmp_path):
    path = write(tmp_path / "grid.jsonnet", json.dumps({"configs": {"no-lora": merge(few_shot(4), {"lora": None})}}))
    assert load_experiments(path)["no-lora"].lora is None


def test_load_single_returns_the_one_experiment(tmp_path):
    name, experiment = load_single(write(tmp_path / "one.json", few_shot(2)), "train")
    assert name == "one"
    assert experiment.dataset.shots == 2


def test_load_single_refuses_a_file_with_two_experiments(tmp_path):
    path = write(tmp_path / "two.jsonnet", json.dumps({"configs": {"a": config(), "b": config()}}))
    with pytest.raises(ConfigError) as caught:
        load_single(path, "evaluate")
    [message] = caught.value.messages
    assert str(path) in message
    assert "2" in message and "run-experiments" in message


def test_load_single_applies_the_command_check(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_single(write(tmp_path / "zero.json", config()), "train")
    assert any("dataset.shots" in message for message in caught.value.messages)


# --- JSONNET external variables and syntax errors -----------------------------------------------------------------


def test_parse_ext_vars():
    assert parse_ext_vars(None) == {}
    assert parse_ext_vars([]) == {}
    assert parse_ext_vars(["model=org/name", "shots=8", "expr=a=b", "empty="]) == {
        "model": "org/name",
        "shots": "8",
        "expr": "a=b",
        "empty": "",
    }


@pytest.mark.parametrize("pair", ["novalue", "=value"])
def test_malformed_ext_var_is_a_config_error(pair):
    with pytest.raises(ConfigError) as caught:
        parse_ext_vars(["good=1", pair])
    [message] = caught.value.messages
    assert repr(pair) in message and "key=value" in message


def test_ext_vars_reach_std_ext_var(tmp_path):
    base = config()
    path = write(
        tmp_path / "grid.jsonnet",
        f"""
        local base = {json.dumps(base)};
        {{ configs: {{ run: base + {{
            model+: {{ name: std.extVar('model') }},
            dataset+: {{ shots: std.parseInt(std.extVar('shots')) }},
            lora: {{}}, training: {{}},
        }} }} }}
        """,
    )
    configs = load_experiments(path, parse_ext_vars(["model=org/Some-Model", "shots=16"]))
    assert configs["run"].model.name == "org/Some-Model"
    assert configs["run"].dataset.shots == 16


def test_undefined_ext_var_is_a_config_error_naming_it(tmp_path):
    path = write(tmp_path / "grid.jsonnet", "{ configs: { a: { model: { name: std.extVar('model') } } } }")
    [message] = problems(path)
    assert message.startswith(f"{path}: JSONNET error")
    assert "model" in message


def test_jsonnet_syntax_error_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "broken.jsonnet", "{\n  configs: {\n    a: { dataset: 1 }\n    b: {},\n  },\n}\n")
    with pytest.raises(ConfigError) as caught:
        evaluate_file(path)
    [message] = caught.value.messages
    assert message.startswith(f"{path}: JSONNET error")
    assert "broken.jsonnet:4:" in message


def test_json_syntax_error_names_the_file_line_and_column(tmp_path):
    path = write(tmp_path / "broken.json", '{\n  "dataset": {"path": "x",},\n  "model": {}\n}\n')
    [message] = problems(path)
    assert message.startswith(f"{path}:2:")
    assert "invalid JSON" in message
