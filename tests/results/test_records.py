"""The versioned records (sft.results.records): each file round-trips through its model, a file as sft
wrote it before records carried a version is read and upgraded with its content kept, a newer version and
a malformed file are errors that name what is wrong, and every model documents its fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sft.reference import RECORD_MODELS
from sft.report.document import AggregatedResults
from sft.results.adapters import ReadyRecord
from sft.results.records import VERSION_KEY, Record, RecordError
from sft.results.run_record import ResultsRecord
from sft.results.states import RunState, StatusRecord
from sft.runner.slurm_record import SlurmJobRecord
from sft.search.study import SearchRecord, TrialRecord
from sft.serving.manifest import Manifest
from sft.tracking.records import GridTrackingRecord, RunTrackingRecord

HASH = "5b1fc9957f6e99c217fa33b6bba93f309a9c2f5454884a7d65f0f300ed0a4233"
KEY = "8f26cd5213e95658922bae20e8c34cc2e9c0240f0dfe31efdaf46bba86048011"
CONFIG = {"dataset": {"path": "build/quickstart/data", "task_type": "classification", "shots": 32}}
TRAINING = {
    "train_examples": 96, "train_loss": 0.3933211295141114, "train_steps": 180, "trainable_parameters": 38912,
    "total_parameters": 600960, "world_size": 1, "selection": None,
}  # fmt: skip
METRICS = {
    "accuracy": 0.74, "f1_macro": 0.7388654223014931, "ece": 0.18739105541598605,
    "per_class": {"negative": {"precision": 0.69, "recall": 0.68, "f1": 0.6868686868686869, "support": 50}},
    "confusion_matrix": {"labels": ["negative", "neutral"], "matrix": [[34, 8], [7, 42]]},
}  # fmt: skip

# Files as sft wrote them before records carried a schema_version: every key, in the writer's order.
UNVERSIONED: dict[str, dict[str, Any]] = {
    "results.json": {
        "experiment": "few-shot-lora-default", "seed": 42, "config_hash": HASH, "task_type": "classification",
        "metrics": METRICS, "n_test": 150, "test_hash": "649d79ec" * 8, "n_shots": 96,
        "labels": ["negative", "neutral", "positive"], "thresholds": None, "threshold_source": None,
        "training": TRAINING, "training_key": KEY, "adapter_source": "trained",
        "adapter": f"_adapters/{KEY}/seed-42/adapter", "calibration": None,
        "timings": {"train_seconds": 5.937301158905029, "inference_seconds": 0.084, "total_seconds": 6.0677},
        "versions": {"python": "3.11.7", "sft": "0.1.0", "torch": "2.13.0+cpu", "cuda": None, "gpu": None},
        "finished_at": "2026-12-06T01:58:18+00:00", "config": CONFIG,
    },
    "status.json": {
        "experiment": "zero-shot", "seed": 42, "state": "done", "reason": "", "exit_code": 0, "signal": None,
        "duration_seconds": 0.361, "attempt": 1, "pid": 3123, "executor": "forkserver", "gpus": None,
        "started_at": "2026-12-06T01:58:24.737+00:00", "launched_at": "2026-12-06T01:58:24.795+00:00",
        "finished_at": "2026-12-06T01:58:25.098+00:00", "config_hash": HASH,
        "log": "/results/zero-shot/seed-42/run.log",
    },
    "ready.json": {
        "training_key": KEY, "seed": 42, "trained_by": "few-shot-lora-default", "training": TRAINING,
        "train_seconds": 5.937301158905029,
        "training_settings": {"dataset": {"path": "build/quickstart/data", "shots": 32}, "lora": {}},
        "finished_at": "2026-12-06T01:58:18+00:00",
    },
    "slurm_job.json": {"job_id": "1234_3", "name": "sft:results", "submitted_at": 1796536698.25, "host": "login1"},
    "sft_export.json": {
        "format_version": 1, "task_type": "classification", "predictor": "label_scoring",
        "labels": ["negative", "neutral", "positive"], "config": CONFIG,
        "weights": {"merged": True, "base": None, "dequantized": False}, "chat_template": "{{ messages }}",
        "icl_examples": [], "icl_drawn_per_input": False, "calibration": None, "thresholds": None,
        "source": {"run": "/results/few-shot-lora-default/seed-42", "experiment": "few-shot-lora-default",
                   "seed": 42, "config_hash": HASH, "metrics": METRICS},
    },
}  # fmt: skip

# Other shapes the runner writes into status.json: a failure (with the log's end), a run found finished
# on resume (state and reason only), a Slurm job's and a Ray task's facts.
STATUS_SHAPES = [
    {**UNVERSIONED["status.json"], "state": "failed", "reason": "exit code 1", "exit_code": 1, "log_tail": "boom\n"},
    {"experiment": "zero-shot", "seed": 42, "state": "done", "reason": "found finished on resume", "config_hash": HASH,
     "log": "/results/zero-shot/seed-42/run.log"},
    {**UNVERSIONED["status.json"], "pid": None, "executor": "slurm", "slurm_job_id": "77_1", "slurm_state": "COMPLETED",
     "slurm_node": "gpu3", "slurm_restarts": 0, "adopted": False},
    {**UNVERSIONED["status.json"], "executor": "ray", "ray_node": "10.0.0.7"},
]  # fmt: skip

MODELS: dict[str, type[Record]] = {
    model.FILE: model for model in (ResultsRecord, StatusRecord, ReadyRecord, SlurmJobRecord, Manifest)
}


def aggregated() -> dict[str, Any]:
    """An aggregated_results.json of version 2 with one row, one failure and one missing run."""
    row = {
        "experiment": "zero-shot",
        "seed": 42,
        "status": "done",
        "task_type": "classification",
        "dataset": "build/quickstart/data",
        "model": "build/quickstart/model",
        "config_hash": HASH,
        "training_key": None,
        "adapter_source": None,
        "finished_at": "2026-12-06T01:58:25+00:00",
        "n_test": 150,
        "test_hash": "649d79ec" * 8,
        "n_shots": 0,
        "train_seconds": None,
        "inference_seconds": 0.08,
        "total_seconds": 0.26,
        "folder": "zero-shot/seed-42",
        "thresholds": None,
        "threshold_source": None,
        "labels": ["negative", "neutral", "positive"],
        "settings": {"dataset.shots": 0},
        "selection": None,
        "tokens_per_second": None,
        "padding_share": None,
        "batching": None,
        "metrics": {"accuracy": 0.34, "per_class.negative.support": 50},
    }
    failure = {
        "experiment": "broken",
        "seed": 42,
        "folder": "broken/seed-42",
        "state": "failed",
        "exit_code": 1,
        "reason": "exit code 1",
        "duration_seconds": 2.5,
        "log": "broken/seed-42/run.log",
        "log_tail": "boom\n",
    }
    summary = {
        "runs_done": 1,
        "runs_failed": 1,
        "runs_skipped": 0,
        "runs_missing": 1,
        "experiments_done": 1,
        "datasets": ["build/quickstart/data"],
        "models": ["build/quickstart/model"],
        "compute_seconds": 0.26,
        "failed_compute_seconds": 0,
        "trainings": 0,
        "adapters_reused": 0,
    }
    return {
        "schema_version": 2, "generated_at": "2026-12-06T01:58:26+00:00", "summary": summary,
        "varying_settings": [], "constant_settings": {"dataset.shots": 0}, "rows": [row], "failures": [failure],
        "skipped": [], "missing": [{"experiment": "late", "seed": None, "folder": None, "state": "not started"}],
        "problems": ["odd/seed-1/results.json: unreadable result file (RecordError: ...)"], "plots": [],
        "statistics": None,
    }  # fmt: skip


def write(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
    return path


# -- round trips and older files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(UNVERSIONED))
def test_a_file_without_schema_version_is_read_and_written_back_with_only_the_version_added(tmp_path, name):
    old = UNVERSIONED[name]
    record = MODELS[name].read(write(tmp_path / name, old))
    assert record.version() == 1
    written = json.loads(record.write(tmp_path / "again" / name).read_text(encoding="utf-8"))
    expected = {key: value for key, value in old.items() if key != "format_version"}  # the manifest's old version key
    assert written == {VERSION_KEY: 1, **expected}
    assert list(written) == [VERSION_KEY, *expected]  # the writer's key order is kept
    assert MODELS[name].read(tmp_path / "again" / name) == record


@pytest.mark.parametrize("shape", STATUS_SHAPES, ids=["failed", "found-finished", "slurm", "ray"])
def test_every_status_the_runner_writes_keeps_its_keys(tmp_path, shape):
    status = StatusRecord.read(write(tmp_path / "status.json", shape))
    assert status.content() == {VERSION_KEY: 1, **shape}
    assert status.run_state == RunState.parse(shape["state"])


def test_results_from_before_a_key_existed_read_it_as_null(tmp_path):
    first_form = {
        key: UNVERSIONED["results.json"][key]
        for key in ("experiment", "seed", "config_hash", "task_type", "metrics", "n_test", "n_shots", "labels",
                    "training", "versions", "finished_at", "config")
    }  # fmt: skip
    results = ResultsRecord.read(write(tmp_path / "results.json", first_form))
    assert results.test_hash is results.training_key is results.adapter_source is results.thresholds is None
    assert results.timings.total_seconds is None and results.metrics == METRICS


def test_a_state_this_version_does_not_know_is_kept(tmp_path):
    status = StatusRecord.read(write(tmp_path / "status.json", {"experiment": "x", "seed": 1, "state": "paused"}))
    assert status.state == "paused" and status.run_state is None


def test_the_manifest_s_format_version_becomes_schema_version_and_an_unknown_one_is_refused(tmp_path):
    old = UNVERSIONED["sft_export.json"]
    assert "format_version" not in json.loads(Manifest.read(write(tmp_path / "m.json", old)).to_json())
    with pytest.raises(RecordError, match=r"m\.json: format_version 2 is not one this sft reads"):
        Manifest.read(write(tmp_path / "m.json", {**old, "format_version": 2}))


def test_aggregated_results_round_trip_and_the_unversioned_foundation_report_is_named(tmp_path):
    document = AggregatedResults.parse(aggregated(), "aggregated_results.json")
    path = document.write(tmp_path / "aggregated_results.json")
    assert json.loads(path.read_text(encoding="utf-8")) == aggregated()
    assert json.loads(path.read_text())["summary"]["failed_compute_seconds"] == 0  # an integer stays one
    assert AggregatedResults.read(path) == document
    foundation = {key: aggregated()[key] for key in ("generated_at", "rows", "failures", "missing")}
    with pytest.raises(RecordError) as caught:
        AggregatedResults.read(write(tmp_path / "old.json", foundation))
    message = str(caught.value)
    assert "version 1 (a file without schema_version) cannot be read" in message and "aggregate RESULTS" in message


# -- errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(UNVERSIONED))
def test_a_newer_version_is_an_error_that_names_it(tmp_path, name):
    newer = {**UNVERSIONED[name], VERSION_KEY: 7}
    with pytest.raises(RecordError) as caught:
        MODELS[name].read(write(tmp_path / name, newer))
    message = str(caught.value)
    assert f"{tmp_path / name}: schema_version 7 is newer than this sft reads" in message
    assert f"{name} up to version 1" in message and "upgrade sft" in message


@pytest.mark.parametrize("name", sorted(UNVERSIONED))
def test_a_malformed_file_names_the_file_and_the_field(tmp_path, name):
    model = MODELS[name]
    first_required = next(key for key, field in model.model_fields.items() if field.is_required())
    broken = {key: value for key, value in UNVERSIONED[name].items() if key != first_required}
    with pytest.raises(RecordError, match=rf"{name}: {first_required}: Field required"):
        model.read(write(tmp_path / name, broken))
    if model is StatusRecord:  # an executor's handle adds its own facts: kept, not refused
        assert model.read(write(tmp_path / name, {**UNVERSIONED[name], "unknown_key": 1})).content()["unknown_key"] == 1
    else:
        with pytest.raises(RecordError, match=rf"{name}: .*unknown_key: Extra inputs are not permitted"):
            model.read(write(tmp_path / name, {**UNVERSIONED[name], "unknown_key": 1}))
    with pytest.raises(RecordError, match=rf"{name}: not a JSON object"):
        model.read(write(tmp_path / name, [UNVERSIONED[name]]))
    with pytest.raises(RecordError, match=rf"{name}: schema_version '1' is not a version number"):
        model.read(write(tmp_path / name, {**UNVERSIONED[name], VERSION_KEY: "1"}))
    (tmp_path / name).write_text('{"truncated": ', encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):  # not JSON at all: json's own error, with line and column
        model.read(tmp_path / name)


def test_a_wrong_type_is_named_with_its_path(tmp_path):
    broken = {**UNVERSIONED["results.json"], "timings": {"total_seconds": "slow"}}
    with pytest.raises(RecordError, match=r"timings\.total_seconds"):
        ResultsRecord.read(write(tmp_path / "results.json", broken))


# -- the models as a reference ------------------------------------------------------------------------------------


def test_record_models_lists_every_record_once_each_field_described():
    models = RECORD_MODELS
    assert set(models) == {
        *MODELS.values(),
        AggregatedResults,
        SearchRecord,
        TrialRecord,
        GridTrackingRecord,
        RunTrackingRecord,
    }
    assert len({model.FILE for model in models}) == len(models)
    for model in models:
        assert model.__doc__ and model.version() >= 1
        assert all(version < model.version() for version in model.UPGRADES)
        undocumented = [name for name, field in model.model_fields.items() if not field.description]
        assert undocumented == [], f"{model.__name__}: {undocumented}"


def test_results_record_the_initialization_only_when_one_ran(tmp_path):
    """`initialization` is a key added without a version change: absent when null, so every file without it
    reads and writes back unchanged; present, it is typed (method, examples, cache, seconds, layers)."""
    old = UNVERSIONED["results.json"]
    assert "initialization" not in ResultsRecord.read(write(tmp_path / "results.json", old)).content()
    ran = {"method": "eva", "examples": 96, "from_cache": True, "seconds": 0.02, "layers": 14}
    record = ResultsRecord.read(write(tmp_path / "results.json", {VERSION_KEY: 1, **old, "initialization": ran}))
    assert record.initialization is not None and record.initialization.from_cache is True
    assert record.content()["initialization"] == ran and record.version() == 1
    with pytest.raises(RecordError, match=r"initialization\.from_cache"):
        ResultsRecord.read(write(tmp_path / "bad.json", {**old, "initialization": {**ran, "from_cache": "maybe"}}))
