"""sft.runner.statistics: the worker the grid runner hands finished runs to, so that preparing their
report statistics never holds the poll loop."""

from __future__ import annotations

import time

import pytest

from sft.results.layout import Run
from sft.runner.statistics import StatisticsWorker


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
