"""Every example config shipped in etc/configs validates (schema, library argument names, metric names),
without touching the network: the data check is off because the datasets live on the hub."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sft.experiment.checks import validate_grid

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "etc" / "configs"
SHIPPED = sorted([*CONFIGS.glob("json/*.json"), *CONFIGS.glob("jsonnet/*.jsonnet")])

# External variables a file needs; files not listed here get those their header documents (`--ext-var k=v`).
EXT_VARS = {"nli.jsonnet": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct"}}


def ext_vars_of(path: Path) -> dict[str, str]:
    if path.name in EXT_VARS:
        return EXT_VARS[path.name]
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
