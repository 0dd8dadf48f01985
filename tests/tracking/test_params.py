"""sft.tracking without a tracker: what a run logs (params, metrics, step metrics), the records that keep its
run ids, and the options' checks."""

from __future__ import annotations

from helpers import classification_config, merge, training_sections
from typer.testing import CliRunner

from sft.cli import app
from sft.config import parse_config
from sft.results.layout import Run
from sft.results.logs import RUNNER_LOG_ENV
from sft.results.run_record import ResultsRecord, Timings
from sft.runner.options import Options, option_problems
from sft.tracking.child import start_child
from sft.tracking.params import final_metrics, setting_params, step_metrics, varying_keys
from sft.tracking.publish import deactivate
from sft.tracking.records import RUNNING, GridTrackingRecord, RunTrackingRecord
from sft.tracking.settings import STORE_FILE, TRACKING_FOLDER, TrackingOptions


def grid():
    base = classification_config("data", "model")
    return {
        "zero": parse_config(base),
        "icl": parse_config(merge(base, {"inference": {"icl_examples": 1}})),
        "few": parse_config(merge(base, training_sections(shots=2))),
    }


def test_the_settings_that_vary_are_logged_by_every_run_and_the_user_set_ones_too():
    configs = grid()
    varying = varying_keys(configs.values())
    # lora's and training's keys at their defaults do not vary: only those the few-shot run sets
    assert varying[:2] == ["dataset.shots", "inference.icl_examples"] and "lora.r" in varying
    assert "lora.bias" not in varying and "inference.batch_size" not in varying
    params = setting_params(configs["zero"], varying)
    assert params["dataset.shots"] == "0" and params["inference.icl_examples"] == "0"  # defaults, yet varying
    assert params["prompting.input_columns"] == '["text"]' and "lora.r" not in params
    alone = setting_params(configs["icl"])  # without the grid: only what the user set
    assert alone["inference.icl_examples"] == "1" and "dataset.shots" not in alone


def results(training=None) -> ResultsRecord:
    return ResultsRecord(
        experiment="few", seed=1, config_hash="h", task_type="classification",
        metrics={"accuracy": 0.5, "per_class": {"neg ative": {"f1": 0.25}}, "confusion_matrix": [[1, 0], [0, 1]],
                 "flag": True, "nan": float("nan")},
        n_test=4, test_hash=None, n_shots=2, labels=None, thresholds=None, threshold_source=None, training=training,
        training_key="k", adapter_source="trained", adapter=None, calibration=None,
        timings=Timings(train_seconds=1.5, inference_seconds=0.5, total_seconds=3), versions=None, finished_at=None,
        config={},
    )  # fmt: skip


def test_final_metrics_are_the_numbers_of_results_json_with_keys_mlflow_accepts():
    metrics = final_metrics(results({"train_loss": 2.0, "train_steps": 4, "selection": None}))
    assert metrics == {
        "accuracy": 0.5, "per_class.neg ative.f1": 0.25, "timings.train_seconds": 1.5,
        "timings.inference_seconds": 0.5, "timings.total_seconds": 3.0, "training.train_loss": 2.0,
        "training.train_steps": 4.0, "n_test": 4.0, "n_shots": 2.0,
    }  # fmt: skip


def test_the_learning_curve_and_the_training_loss_become_step_metrics():
    curve = [
        {"step": 2, "train_loss": 3.0, "validation_loss": 2.5, "metrics": {"f1_macro": 0.4}},
        {"step": 4, "train_loss": 2.0, "validation_loss": None, "metrics": {"f1_macro": 0.6}},
    ]
    training = {"train_loss": 2.5, "train_steps": 5, "selection": {"learning_curve": curve}}
    assert step_metrics(results(training)) == [
        ("train_loss", 3.0, 2), ("validation_loss", 2.5, 2), ("validation.f1_macro", 0.4, 2),
        ("train_loss", 2.0, 4), ("validation.f1_macro", 0.6, 4), ("train_loss", 2.5, 5),
    ]  # fmt: skip
    assert step_metrics(results()) == []


def test_the_default_store_and_the_records_live_in_the_results_folder(tmp_path):
    options = TrackingOptions()
    assert options.resolved_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / STORE_FILE}"
    assert options.artifact_location(tmp_path).endswith(f"{TRACKING_FOLDER}/artifacts")
    assert TrackingOptions(uri="http://host:5000").artifact_location(tmp_path) is None
    assert options.experiment_name(tmp_path / "grid-a") == "grid-a"
    record = RunTrackingRecord(
        tracking_uri="u", experiment_id="1", run_id="r", parent_run_id="p", config_hash="h", invocation="i",
        state=RUNNING,
    )  # fmt: skip
    record.write(tmp_path / RunTrackingRecord.FILE)
    assert RunTrackingRecord.read(tmp_path / RunTrackingRecord.FILE) == record


def test_an_unknown_tracker_is_refused_with_the_other_options():
    problems = option_problems(Options(jobs=0, tracking=TrackingOptions("wandb")))
    assert problems == ["--jobs must be at least 1", "--track 'wandb': not a tracker sft knows; use mlflow"]


def test_only_a_runner_started_process_of_an_active_tracked_grid_tracks(tmp_path, monkeypatch):
    config, run = grid()["zero"], Run("zero", 1, tmp_path)
    record = GridTrackingRecord(
        tracker="mlflow", tracking_uri="http://127.0.0.1:9", experiment_id="1", parent_run_id="p", active=False,
        invocation="i",
    )  # fmt: skip
    GridTrackingRecord.path(tmp_path).parent.mkdir(parents=True)
    record.write(GridTrackingRecord.path(tmp_path))
    monkeypatch.setenv(RUNNER_LOG_ENV, "1")
    assert start_child(config, run) is None  # a grid record, but no tracked grid runs
    record.model_copy(update={"active": True}).write(GridTrackingRecord.path(tmp_path))
    monkeypatch.delenv(RUNNER_LOG_ENV)
    assert start_child(config, run) is None  # a lone run-experiment never tracks
    deactivate(tmp_path)  # what an untracked grid does first: a killed tracked runner's record is turned off
    assert not GridTrackingRecord.read(GridTrackingRecord.path(tmp_path)).active


def test_tracking_flags_without_track_are_refused(tmp_path):
    result = CliRunner().invoke(app, ["aggregate", str(tmp_path), "--tracking-uri", "http://host:5000"])
    assert result.exit_code == 2 and "need --track mlflow" in result.output
