"""The grid runner under faults, through the real CLI and the real executors: a runner killed with
SIGKILL mid-grid and rerun (every experiment finished exactly once, no partial file, no orphan), one
killed while publishing a shared adapter (the rerun trains it exactly once, no half-written adapter is
used, the runs of a failed training fail with the reason), a grid
with crashing, hanging and flaky experiments (the others finish; each failure is recorded), and an
interrupted grid (exit 130, no child process left)."""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from pathlib import Path

import pytest
from helpers import merge, training_sections
from helpers.runner import fast_config, finished_count, start_runner, status, tagged, wait_until, write_grid

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def test_killed_runner_leaves_no_orphan_and_the_rerun_does_each_experiment_exactly_once(
    tmp_path, tiny_qwen, sentiment_data
):
    names = [f"exp{index}" for index in range(6)]
    grid = write_grid(tmp_path, {name: fast_config(sentiment_data, tiny_qwen) for name in names})
    results = tmp_path / "results"
    marker = uuid.uuid4().hex
    faults = {name: "sleep:1.5" for name in names}
    runner = start_runner(grid, results, "--jobs", "2", faults=faults, marker=marker)
    done = lambda: sum((results / name / "seed-42" / "results.json").exists() for name in names)  # noqa: E731
    wait_until(lambda: done() >= 2 or runner.poll() is not None, 240, "two finished experiments")
    assert runner.poll() is None, runner.communicate()[1][-3000:]
    runner.send_signal(signal.SIGKILL)
    runner.communicate()
    wait_until(lambda: not tagged(marker), 20, "the killed runner's children to die")
    first_pass = done()
    assert 2 <= first_pass < len(names)

    rerun = start_runner(grid, results, "--jobs", "2", marker=marker)
    _, stderr = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, stderr[-3000:]
    assert stderr.count("skipped (finished with the same config hash)") >= first_pass
    for name in names:
        folder = results / name / "seed-42"
        assert json.loads((folder / "results.json").read_text())["experiment"] == name
        assert finished_count(results, name) == 1, (folder / "run.log").read_text()[-2000:]
        assert status(results, name)["state"] == "done"
    assert not list(results.rglob("*.tmp"))
    assert not tagged(marker)


def test_runner_killed_while_publishing_a_shared_adapter_reruns_its_training_exactly_once(
    tmp_path, tiny_qwen, sentiment_data
):
    from sft.config import parse_config
    from sft.results.adapters import READY, STORE, SharedAdapter

    trained = merge(fast_config(sentiment_data, tiny_qwen), training_sections(shots=2))
    broken = merge(trained, {"training": {"trainer_args": {"learning_rate": 5e-4}}})
    configs = {
        "a1": trained,
        "a2": merge(trained, {"inference": {"normalization": "mean"}}),
        "a3": merge(trained, {"inference": {"max_seq_length": 512}}),
        "b1": broken,  # its training raises: b2 fails with the reason, without starting
        "b2": merge(broken, {"inference": {"normalization": "mean"}}),
    }
    grid = write_grid(tmp_path, configs)
    results = tmp_path / "results"
    shared = SharedAdapter(results, parse_config(trained).training_key(), 42)
    marker = uuid.uuid4().hex
    faults = {"a1": "publish-sleep:60", "b1": "raise"}
    runner = start_runner(grid, results, "--jobs", "2", faults=faults, marker=marker)
    publishing = results / "a1" / "seed-42" / "publishing"
    wait_until(lambda: publishing.exists() or runner.poll() is not None, 240, "a1 to publish its adapter")
    assert runner.poll() is None, runner.communicate()[1][-3000:]
    assert not (results / "a2" / "seed-42").exists()  # waiting for a1's training, not started
    runner.send_signal(signal.SIGKILL)
    runner.communicate()
    wait_until(lambda: not tagged(marker), 20, "the killed runner's children to die")
    assert not (shared.folder / READY).exists() and any(shared.folder.glob(".staging-*"))  # half-published

    rerun = start_runner(grid, results, "--jobs", "2", faults={"b1": "raise"}, marker=marker)
    _, stderr = rerun.communicate(timeout=400)
    assert rerun.returncode == 1, stderr[-3000:]  # b1 and b2 failed
    logs = {name: (results / name / "seed-42" / "run.log").read_text() for name in configs}
    assert sum(log.count("Saved the adapter") for log in logs.values()) == 1  # one training published, once
    sources = {
        name: json.loads((results / name / "seed-42" / "results.json").read_text()) for name in ("a1", "a2", "a3")
    }
    assert [sources[name]["adapter_source"] for name in ("a1", "a2", "a3")] == ["trained", "reused", "reused"]
    assert json.loads((shared.folder / READY).read_text())["trained_by"] == "a1"
    assert not any(shared.folder.glob(".staging-*")) and [p.name for p in (results / STORE).iterdir()] == [shared.key]
    assert "Training on" not in logs["a2"] + logs["a3"]
    for name in ("b1", "b2"):
        assert status(results, name)["state"] == "failed"
    assert (
        "its training" in status(results, "b2")["reason"] and "failed in b1 seed 42" in status(results, "b2")["reason"]
    )
    assert "Training on" not in logs["b2"]
    assert not tagged(marker)


def test_crashing_hanging_and_flaky_experiments_do_not_stop_the_others(tmp_path, tiny_qwen, sentiment_data):
    faults = {"raises": "raise", "exits": "exit", "oom-killed": "sigkill", "hangs": "hang", "flaky": "flaky"}
    names = ["ok-1", *faults, "ok-2"]
    grid = write_grid(tmp_path, {name: fast_config(sentiment_data, tiny_qwen) for name in names})
    results = tmp_path / "results"
    marker = uuid.uuid4().hex
    runner = start_runner(
        grid, results, "--jobs", "2", "--timeout", "12", "--retries", "1", faults=faults, marker=marker
    )
    _, stderr = runner.communicate(timeout=600)
    assert runner.returncode == 1, stderr[-3000:]
    for name in ("ok-1", "ok-2", "flaky"):
        assert status(results, name)["state"] == "done", stderr[-3000:]
        assert finished_count(results, name) == 1
    assert status(results, "flaky")["attempt"] == 2
    # --jobs 2: each fork server child pinned to its half of the cores, one intra-op thread per core
    threads, cores = re.search(
        r"threads=(\d+) cores=(\S+)", (results / "ok-1" / "seed-42" / "run.log").read_text()
    ).groups()
    assert int(threads) == len(cores.split(",")) <= max(1, len(os.sched_getaffinity(0)) // 2)
    expected = {
        "raises": "exit code 1",
        "exits": "exit code 3",
        "oom-killed": "killed by SIGKILL",
        "hangs": "timeout after 12 s",
    }
    for name, reason in expected.items():
        record = status(results, name)
        assert record["state"] == "failed" and record["reason"] == reason, record
        assert record["attempt"] == 2  # --retries 1: each failure was tried twice
        assert record["duration_seconds"] > 0
        assert f"failed: {name} seed 42 ({reason})" in stderr
        assert not (results / name / "seed-42" / "results.json").exists()
    assert "injected failure" in status(results, "raises")["log_tail"]
    assert status(results, "oom-killed")["signal"] == "SIGKILL"
    assert status(results, "hangs")["signal"] == "SIGTERM"
    failures = json.loads((results / "aggregated_results.json").read_text())["failures"]
    assert sorted(failure["experiment"] for failure in failures) == sorted(expected)
    assert not tagged(marker)


@pytest.mark.parametrize("executor", ["forkserver", "subprocess"])
def test_interrupt_stops_the_children_and_exits_130(tmp_path, tiny_qwen, sentiment_data, executor):
    names = ["a", "b", "c"]
    grid = write_grid(tmp_path, {name: fast_config(sentiment_data, tiny_qwen) for name in names})
    results = tmp_path / "results"
    marker = uuid.uuid4().hex
    arguments = ("--jobs", "2", "--executor", executor)
    runner = start_runner(grid, results, *arguments, faults=dict.fromkeys(names, "hang"), marker=marker)

    def two_running() -> bool:
        states = [status(results, name) for name in names if (results / name / "seed-42" / "status.json").exists()]
        return sum(state["state"] == "running" and state["pid"] is not None for state in states) == 2

    wait_until(lambda: two_running() or runner.poll() is not None, 120, "two running experiments")
    children = [status(results, name)["pid"] for name in names[:2]]
    runner.send_signal(signal.SIGINT)
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 130, stderr[-3000:]
    assert [status(results, name)["state"] for name in names[:2]] == ["interrupted", "interrupted"]
    assert not (results / "c" / "seed-42" / "status.json").exists()  # scheduling stopped
    assert not tagged(marker)
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in children)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
