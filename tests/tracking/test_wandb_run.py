"""W&B offline runs, real ones read back from their files: a training run that reports to W&B lands in its run
folder, grouped by the grid, with the trainer's curve and the test metrics sft adds at its end
(`sft.tracking.wandb_run`); a finished run ends with exit code 0, a failed one with its reason and exit code 1,
and a process without a W&B run is left alone. The client comes from `build/test-wandb` (`wandb_client`)."""

from __future__ import annotations

import pytest
from helpers import classification_config, merge, training_sections
from helpers.report import classification_config as report_config
from helpers.report import classification_metrics, write_results
from helpers.wandb_log import read_offline_run, wandb_client

from sft.config import parse_config
from sft.report.aggregate import ReportOptions, aggregate
from sft.results.layout import Run
from sft.tracking.wandb_run import active_run, wandb_ended

pytestmark = pytest.mark.slow  # each W&B run starts W&B's service process
# what a run that reports to W&B sets in its process (sft.training.common.wandb_environment)
WANDB_VARIABLES = ("WANDB_DIR", "WANDB_RUN_GROUP", "WANDB_NAME", "WANDB_JOB_TYPE", "WANDB_MODE", "WANDB_PROJECT",
                   "WANDB_SILENT")  # fmt: skip


@pytest.fixture
def wandb(monkeypatch):
    """The client, with W&B's variables restored and its process-wide settings (read from the environment
    once) dropped after the test."""
    client = wandb_client()
    for key in WANDB_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    client.teardown()
    yield client
    client.teardown()


@pytest.fixture
def offline(tmp_path, monkeypatch, wandb):
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    return tmp_path


def the_run(folder):
    (found,) = (folder / "wandb").glob("offline-run-*")
    return read_offline_run(found)


def test_a_training_run_reports_offline_into_its_folder_grouped_by_the_grid(tmp_path, tiny_qwen, sentiment_data, wandb):
    from sft.experiment.run import run_experiment

    raw = classification_config(sentiment_data, tiny_qwen, **training_sections(shots=2, epochs=2))
    raw = merge(raw, {"dataset": {"max_n_test": 6}})
    raw["training"]["trainer_args"] |= {"report_to": ["wandb"], "logging_steps": 1}
    config, run = parse_config(raw), Run("few", 7, tmp_path / "grid-a")
    finished = run_experiment(config, run)

    assert active_run() is None  # ended with the run
    (found,) = (run.folder / "wandb").glob("offline-run-*")
    logged = read_offline_run(found)
    assert (logged.project, logged.group, logged.name, logged.job_type) == ("sft", "grid-a", "few/seed-7", "few")
    assert sum("train/loss" in row for row in logged.history) >= 2  # the trainer's curve, every step
    assert logged.summary["accuracy"] == pytest.approx(finished["metrics"]["accuracy"])
    assert logged.summary["f1_macro"] == pytest.approx(finished["metrics"]["f1_macro"])
    assert logged.summary["sft.state"] == "done" and logged.exit_code == 0
    assert logged.config["sft.config_hash"] == config.config_hash() and logged.config["sft.seed"] == 7

    _, markdown_path = aggregate(tmp_path / "grid-a", ReportOptions(plots=frozenset(), statistics=False))
    link = f"few/seed-7/wandb/{found.name}"
    assert f"- [{link}]({link})" in markdown_path.read_text(encoding="utf-8")


def test_a_finished_run_gets_its_test_metrics_and_exit_code_0(offline, wandb):
    raw = report_config(8)
    write_results(offline, "lora", 3, raw, classification_metrics(0.75))
    config, run = parse_config(raw), Run("lora", 3, offline)
    with wandb_ended(config, run):
        wandb.init(project="sft", name=run.relative)
    assert active_run() is None
    logged = the_run(offline)
    assert logged.exit_code == 0 and logged.summary["sft.state"] == "done"
    assert logged.summary["accuracy"] == pytest.approx(0.75)
    assert logged.config["sft.config_hash"] == config.config_hash() and logged.config["sft.seed"] == 3


def test_a_failed_run_ends_with_its_reason_and_exit_code_1(offline, wandb):
    config, run = parse_config(report_config(8)), Run("lora", 1, offline)
    with pytest.raises(RuntimeError, match="out of memory"), wandb_ended(config, run):
        wandb.init(project="sft", name=run.relative)
        raise RuntimeError("out of memory")
    logged = the_run(offline)
    assert logged.exit_code == 1 and logged.summary["sft.state"] == "failed"
    assert logged.summary["sft.failure_reason"] == "RuntimeError: out of memory"


def test_nothing_happens_without_a_wandb_run(offline):
    with wandb_ended(parse_config(report_config(0)), Run("zero", 1, offline)):
        pass
    assert not (offline / "wandb").exists()
