"""The end of a run's W&B run (`sft.tracking.wandb_run`), on real offline W&B runs read back from their files:
a finished run gets its test metrics and identity and exit code 0, a failed one its reason and exit code 1, and
a process without a W&B run is left alone."""

from __future__ import annotations

import pytest
from helpers.report import classification_config, classification_metrics, write_results
from helpers.wandb_log import read_offline_run

from sft.config import parse_config
from sft.results.layout import Run
from sft.tracking.wandb_run import active_run, wandb_ended

pytestmark = pytest.mark.slow  # each W&B run starts W&B's service process
wandb = pytest.importorskip("wandb", reason="the W&B tests need wandb (dev_requirements.txt)")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    return tmp_path


def the_run(folder):
    (found,) = (folder / "wandb").glob("offline-run-*")
    return read_offline_run(found)


def test_a_finished_run_gets_its_test_metrics_and_exit_code_0(offline):
    raw = classification_config(8)
    write_results(offline, "lora", 3, raw, classification_metrics(0.75))
    config, run = parse_config(raw), Run("lora", 3, offline)
    with wandb_ended(config, run):
        wandb.init(project="sft", name=run.relative, dir=offline)  # W&B reads WANDB_DIR once a process
    assert active_run() is None
    logged = the_run(offline)
    assert logged.exit_code == 0 and logged.summary["sft.state"] == "done"
    assert logged.summary["accuracy"] == pytest.approx(0.75)
    assert logged.config["sft.config_hash"] == config.config_hash() and logged.config["sft.seed"] == 3


def test_a_failed_run_ends_with_its_reason_and_exit_code_1(offline):
    config, run = parse_config(classification_config(8)), Run("lora", 1, offline)
    with pytest.raises(RuntimeError, match="out of memory"), wandb_ended(config, run):
        wandb.init(project="sft", name=run.relative, dir=offline)  # W&B reads WANDB_DIR once a process
        raise RuntimeError("out of memory")
    logged = the_run(offline)
    assert logged.exit_code == 1 and logged.summary["sft.state"] == "failed"
    assert logged.summary["sft.failure_reason"] == "RuntimeError: out of memory"


def test_nothing_happens_without_a_wandb_run(offline):
    with wandb_ended(parse_config(classification_config(0)), Run("zero", 1, offline)):
        pass
    assert not (offline / "wandb").exists()
