"""Every example config shipped in etc/configs validates (schema, library argument names, metric names),
without touching the network: the data check is off because the datasets live on the hub.

Configs whose data a user may hold locally take it through the `data` external variable; here (and in CI)
it points at the copies in `../shared/data`, the path relative to the checkout's root that the configs
read before they took the variable, so their config hashes and training keys are those of the results
folders already written with them (pinned in tests/golden/shipped_configs.json).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sft.config import ConfigError
from sft.config.grid import evaluate_file, load_experiments
from sft.experiment.checks import validate_grid

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "etc" / "configs"
SHIPPED = sorted([*CONFIGS.glob("json/*.json"), *CONFIGS.glob("jsonnet/*.jsonnet")])

TWEETEVAL_EMOTION = "../shared/data/tweeteval/emotion"
GOEMOTIONS_EKMAN = "../shared/data/goemotions/ekman"
# External variables a file needs; files not listed here get those their header documents (`--ext-var k=v`).
EXT_VARS = {
    "nli.jsonnet": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
    "tweet_emotion.jsonnet": {"data": TWEETEVAL_EMOTION},
    "tweet_emotion_early_stopping.jsonnet": {"data": TWEETEVAL_EMOTION},
    "goemotions_ekman.jsonnet": {"data": GOEMOTIONS_EKMAN},
    "goemotions_ekman_minilm_head.jsonnet": {"data": GOEMOTIONS_EKMAN},
    "goemotions_structured.jsonnet": {"data": GOEMOTIONS_EKMAN},
    "tweet_emotion_minilm_head.jsonnet": {"data": TWEETEVAL_EMOTION},
}
# The configs that read cardiffnlp/tweet_eval's `emotion` from the hub unless `data` names a folder.
TWEETEVAL_EMOTION_CONFIGS = (
    "tweet_emotion.jsonnet",
    "tweet_emotion_early_stopping.jsonnet",
    "tweet_emotion_minilm_head.jsonnet",
)
PINNED = REPO / "tests" / "golden" / "shipped_configs.json"


def ext_vars_of(path: Path) -> dict[str, str]:
    return EXT_VARS.get(path.name) or ext_vars_of_header(path)


def ext_vars_of_header(path: Path) -> dict[str, str]:
    """The `--ext-var k=v` pairs of the file's header comments (its documented command line)."""
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.lstrip().startswith("//")]
    return dict(re.findall(r"--ext-var\s+([A-Za-z_]\w*)=(\S+)", "\n".join(header)))


def test_configs_are_found():
    assert any(path.suffix == ".json" for path in SHIPPED), CONFIGS
    assert any(path.suffix == ".jsonnet" for path in SHIPPED), CONFIGS


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_shipped_config_validates(path):
    configs = validate_grid(path, ext_vars_of(path), check_data=False)
    assert configs
    if path.suffix == ".json":
        assert list(configs) == [path.stem]


def test_nli_grid_takes_the_model_from_the_command_line():
    configs = validate_grid(CONFIGS / "jsonnet" / "nli.jsonnet", EXT_VARS["nli.jsonnet"], check_data=False)
    assert {config.model.name for config in configs.values()} == {"HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert {config.dataset.shots for config in configs.values()} == {0, 16, 64}


def test_quickstart_covers_zero_shot_few_shot_and_two_lora_initializations():
    configs = validate_grid(CONFIGS / "jsonnet" / "quickstart.jsonnet", check_data=False)

    zero_shot = [config for config in configs.values() if not config.trains]
    few_shot = [config for config in configs.values() if config.trains]
    assert zero_shot and few_shot
    assert all(config.lora is not None and config.training is not None for config in few_shot)
    initializations = {repr(config.lora.init_lora_weights) for config in few_shot}
    assert len(initializations) >= 2, initializations


def test_shipped_configs_keep_their_hashes_and_training_keys():
    """Config hash and training key of every shipped experiment (with the data in ../shared/data): a change
    here re-runs finished grids, so the pinned values change only on purpose."""
    found = {
        path.name: {name: [config.config_hash(), config.training_key()] for name, config in configs.items()}
        for path in SHIPPED
        for configs in [load_experiments(path, ext_vars_of(path), "run-experiment")]
    }
    assert found == json.loads(PINNED.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", TWEETEVAL_EMOTION_CONFIGS)
def test_tweeteval_configs_read_the_hub_or_a_local_folder(name):
    path = CONFIGS / "jsonnet" / name
    from_hub = validate_grid(path, {"data": "cardiffnlp/tweet_eval"}, check_data=False)
    local = validate_grid(path, {"data": "data/emotion"}, check_data=False)

    assert {(config.dataset.path, repr(config.dataset.args)) for config in from_hub.values()} == {
        ("cardiffnlp/tweet_eval", "{'name': 'emotion'}")
    }
    assert {(config.dataset.path, repr(config.dataset.args)) for config in local.values()} == {("data/emotion", "{}")}


@pytest.mark.parametrize("name", sorted(name for name, ext_vars in EXT_VARS.items() if "data" in ext_vars))
def test_data_configs_need_the_data_variable(name):
    """A config that takes its data from the command line says so in its header, with a runnable example."""
    path = CONFIGS / "jsonnet" / name
    assert "data" in ext_vars_of_header(path), f"{name}: document --ext-var data=... in the header"
    with pytest.raises(ConfigError, match="data"):
        evaluate_file(path)


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("tweet_emotion.jsonnet", "tweeteval/emotion"),
        ("goemotions_ekman.jsonnet", "goemotions/ekman"),
        ("goemotions_structured.jsonnet", "goemotions/ekman"),
    ],
)
def test_data_configs_validate_against_the_local_copies(shared_data, name, folder):
    configs = validate_grid(CONFIGS / "jsonnet" / name, {"data": str(shared_data / folder)})
    assert configs
