"""sft.runner.statistics: the worker the grid runner hands finished runs to, so that preparing their
report statistics never holds the poll loop; what it prepares is what the report would compute."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers.report import build_planted

import sft.report.statistics as statistics_module
from sft.report.aggregate import ReportOptions, aggregate
from sft.report.cache import CACHE_FOLDER
from sft.results.layout import Run
from sft.runner.statistics import StatisticsWorker

PLANTED = ("reference", "close", "far", "other-test")  # the runs of `build_planted`, one seed each


def report(root: Path) -> tuple[dict, str]:
    """The report's JSON (less when it was built) and markdown, with the resampling settings the worker
    prepares for (the default)."""
    json_path, markdown_path = aggregate(root, ReportOptions(plots=frozenset()))
    document = json.loads(json_path.read_text(encoding="utf-8"))
    document.pop("generated_at")
    return document, markdown_path.read_text(encoding="utf-8")


@pytest.mark.slow  # starts the worker process
def test_handing_over_returns_at_once_and_close_waits_for_the_worker(tmp_path, capfd):
    worker = StatisticsWorker(tmp_path)
    runs = [Run("a", seed, tmp_path) for seed in range(3)]
    began = time.perf_counter()
    for run in runs:  # no results.json: the worker says so for each, and goes on
        worker.submit(run)
    assert time.perf_counter() - began < 0.1  # the loop never waits on the worker
    worker.close()
    assert worker.process.returncode == 0
    err = capfd.readouterr().err
    assert all(f"statistics of a/seed-{seed} not prepared" in err for seed in range(3)), err


@pytest.mark.slow
def test_a_worker_given_nothing_is_stopped_at_once(tmp_path):
    worker = StatisticsWorker(tmp_path)
    began = time.perf_counter()
    worker.close()
    assert time.perf_counter() - began < 5 and worker.process.returncode is not None


@pytest.mark.slow  # starts the worker process
def test_finished_runs_are_prepared_before_close_returns_and_give_the_same_report(tmp_path, monkeypatch):
    build_planted(tmp_path, n=100)
    worker = StatisticsWorker(tmp_path)
    for name in PLANTED:
        worker.submit(Run(name, 1, tmp_path))
    worker.close()
    assert worker.process.returncode == 0
    assert len(list((tmp_path / CACHE_FOLDER).glob("*.safetensors"))) == len(PLANTED)  # one entry per run
    read: list[Path] = []
    with monkeypatch.context() as patch:  # every run's statistics come from the worker's entries
        patch.setattr(statistics_module, "read_jsonl", lambda path: read.append(Path(path)) or [])
        prepared = report(tmp_path)
    assert read == []
    (tmp_path / CACHE_FOLDER).rename(tmp_path / "moved-away")
    assert report(tmp_path) == prepared  # equal to the report computed from the predictions
