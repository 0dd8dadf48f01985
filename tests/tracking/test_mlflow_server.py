"""Tracked grids against a real `mlflow server` (loopback port, SQLite store, served artifacts), read back
through MLflow's client: one parent per results folder, one child per run with its params, metrics, step
metrics and files, nothing twice across a kill -9 and resume, a later `aggregate --track`, or a server that
stops mid-grid (whose missed run `aggregate --track` publishes later, as it does a folder that ran untracked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import REPO, classification_config, merge, training_sections
from helpers.runner import start_runner, wait_until, write_grid
from helpers.tracking import MlflowServer, ServerUnavailable

from sft.report.aggregate import track as track_results
from sft.results.layout import Run
from sft.tracking.records import DONE, RUNNING, GridTrackingRecord, RunTrackingRecord
from sft.tracking.settings import TrackingOptions

pytestmark = pytest.mark.slow
mlflow = pytest.importorskip("mlflow", reason="the tracking tests need mlflow (requirements.txt)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        server.start()
    except ServerUnavailable as error:
        pytest.skip(f"mlflow server cannot start here: {error}")
    yield server
    server.stop()


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, experiment: str) -> list:
    found = client(uri).get_experiment_by_name(experiment)
    return client(uri).search_runs([found.experiment_id]) if found else []


def children(runs: list) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags:
            grouped.setdefault(run.info.run_name, []).append(run)
    return grouped


def sft_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sft.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=check, timeout=300)


def grid_configs(data: Path, model: Path) -> dict:
    base = merge(classification_config(data, model), {"dataset": {"max_n_test": 6}})
    few = merge(base, training_sections(shots=2, epochs=2))
    few = merge(few, {"dataset": {**few["dataset"], "validation_split": "validation"}})
    few["training"] = {**few["training"], "eval_every": 1, "eval_examples": 6}
    few["training"]["trainer_args"] = {
        **few["training"]["trainer_args"],
        "report_to": ["tensorboard"],
        "logging_steps": 1,
    }
    return {"zero": base, "icl": merge(base, {"inference": {"icl_examples": 1}}), "few": few}


def test_a_grid_killed_and_resumed_logs_each_run_once(server, tmp_path, sentiment_data, tiny_qwen):
    grid = write_grid(tmp_path, grid_configs(sentiment_data, tiny_qwen))
    results = tmp_path / "results"
    track = ("--track", "mlflow", "--tracking-uri", server.uri, "--tracking-experiment", "killed")
    runner = start_runner(grid, results, *track, faults={"icl": "sleep:1"})
    cut = Run("icl", 42, results).folder / RunTrackingRecord.FILE

    def icl_child_open() -> bool:
        return cut.exists() and RunTrackingRecord.read(cut).state == RUNNING

    try:
        wait_until(icl_child_open, 180, "the second run's child to open")
    finally:
        runner.kill()  # kill -9: the experiments die with it (parent-death signal)
        runner.communicate()
    killed_child = RunTrackingRecord.read(cut).run_id
    assert GridTrackingRecord.read(GridTrackingRecord.path(results)).active  # left as the killed runner had it

    resumed = sft_cli("run-experiments", str(grid), "--results-path", str(results), "--no-check-data", *track)
    assert resumed.returncode == 0

    runs = runs_of(server.uri, "killed")
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    grouped = children(runs)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the resumed grid continued its parent
    assert sorted(grouped) == ["few/seed-42", "icl/seed-42", "zero/seed-42"]
    assert all(len(found) == 1 for found in grouped.values()), {name: len(found) for name, found in grouped.items()}
    icl, few = grouped["icl/seed-42"][0], grouped["few/seed-42"][0]
    assert icl.info.run_id == killed_child  # reopened, not a second child
    for (child,) in grouped.values():
        assert child.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert {"accuracy", "f1_macro", "timings.total_seconds"} <= set(child.data.metrics)
        assert child.data.params["dataset.shots"] in ("0", "2") and "inference.icl_examples" in child.data.params
        files = {item.path for item in client(server.uri).list_artifacts(child.info.run_id)}
        assert {"results.json", "predictions.jsonl", "config.json"} <= files
        assert (
            RunTrackingRecord.read(Run(child.data.tags["sft.experiment"], 42, results).folder / "tracking.json").state
            == DONE
        )
    assert few.data.tags["sft.adapter_source"] == "trained" and few.data.tags["sft.training_key"]
    events = list((Run("few", 42, results).folder / "tensorboard").glob("events.out.tfevents.*"))
    logged = client(server.uri).list_artifacts(few.info.run_id, "tensorboard")
    assert events and [Path(item.path).name for item in logged] == [events[0].name]
    assert "- [few/seed-42/tensorboard](few/seed-42/tensorboard)" in (results / "aggregated_results.md").read_text()
    curve = client(server.uri).get_metric_history(few.info.run_id, "validation.f1_macro")
    assert [point.step for point in curve] == sorted({point.step for point in curve}) and len(curve) == 2
    assert len(client(server.uri).get_metric_history(icl.info.run_id, "accuracy")) == 1
    parent_files = {item.path for item in client(server.uri).list_artifacts(parents[0].info.run_id, "report")}
    assert "report/aggregated_results.md" in parent_files
    assert not GridTrackingRecord.read(GridTrackingRecord.path(results)).active

    # publishing again (aggregate --track) adds nothing: no child, no metric point
    assert track_results(results, TrackingOptions(uri=server.uri, experiment="killed")) == parents[0].info.run_id
    again = runs_of(server.uri, "killed")
    assert len(again) == len(runs) and all(len(found) == 1 for found in children(again).values())
    assert len(client(server.uri).get_metric_history(few.info.run_id, "validation.f1_macro")) == 2


def test_a_grid_finishes_when_the_server_stops_mid_grid(server, tmp_path, sentiment_data, tiny_qwen):
    configs = grid_configs(sentiment_data, tiny_qwen)
    grid = write_grid(tmp_path, {"zero": configs["zero"], "icl": configs["icl"]})
    results = tmp_path / "results"
    track = ("--track", "mlflow", "--tracking-uri", server.uri, "--tracking-experiment", "stopped")
    runner = start_runner(grid, results, *track, faults={"icl": "sleep:2"})
    try:
        wait_until(lambda: (Run("zero", 42, results).folder / "results.json").exists(), 180, "the first run")
        server.stop()  # the second run starts its child while the tracker is gone
        _, err = runner.communicate(timeout=240)
    finally:
        if runner.poll() is None:
            runner.kill()
        server.start()
    assert runner.returncode == 0, err[-3000:]
    assert (Run("icl", 42, results).folder / "results.json").exists()
    assert "Tracking at" in (Run("icl", 42, results).folder / "run.log").read_text()
    # the tracker is back: aggregate --track publishes the run it missed (a folder that ran untracked alike)
    assert track_results(results, TrackingOptions(uri=server.uri, experiment="stopped")) is not None
    grouped = children(runs_of(server.uri, "stopped"))
    assert Counter({name: len(found) for name, found in grouped.items()}) == {"zero/seed-42": 1, "icl/seed-42": 1}
    assert json.loads((Run("icl", 42, results).folder / "tracking.json").read_text())["state"] == DONE
