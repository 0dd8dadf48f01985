"""Each parallel slot's share of the cores: the pure split, and what the runner's children really get
(their CPU affinity and OMP_NUM_THREADS, read from inside the child process)."""

from __future__ import annotations

import io
import os
import re
import shlex

import pytest
from helpers.runner import configs
from rich.console import Console

from sft.runner.cpu_share import core_shares, thread_env
from sft.runner.executors import EXECUTORS, ProcessHandle
from sft.runner.options import Options
from sft.runner.scheduler import run_experiments


def test_core_shares_are_disjoint_contiguous_and_balanced():
    assert core_shares([0, 1], 2) == [[0], [1]]
    assert core_shares([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert core_shares([4, 5, 6, 7], 1) == [[4, 5, 6, 7]]
    assert core_shares([0, 1], 3) == [[0], [1], [0]]  # more slots than cores: one core (one thread) each
    for cores in (list(range(7)), list(range(16)), [2, 3, 9]):
        for slots in range(1, len(cores) + 1):
            shares = core_shares(cores, slots)
            assert sorted(core for share in shares for core in share) == cores  # every core, once
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ValueError):
        core_shares([0], 0)


def test_thread_env_leaves_a_users_choice_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_env(2) == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_env(2) == {}


@EXECUTORS.register("test-affinity")
class AffinityExecutor:
    """Each job: a shell that logs the cores it may run on and its OMP_NUM_THREADS, then exits 1."""

    def __init__(self, context):
        pass

    def start(self, job):
        script = 'grep Cpus_allowed_list /proc/self/status; echo "OMP=$OMP_NUM_THREADS"; sleep 0.5; exit 1'
        return ProcessHandle(["sh", "-c", script], job.log_path, job.env(), job.cores)

    def close(self):
        pass


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_parallel_slots_run_on_disjoint_cores_with_one_thread_per_core(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    options = Options(executor="test-affinity", jobs=2)
    run_experiments(configs(tmp_path), tmp_path / "results", options, Console(file=io.StringIO()))
    seen = {}
    for name in ("a", "b"):
        log = (tmp_path / "results" / name / "seed-42" / "run.log").read_text()
        allowed = re.search(r"Cpus_allowed_list:\s*(\S+)", log).group(1)
        seen[name] = _cores(allowed)
        assert f"OMP={len(seen[name])}" in log
    assert not seen["a"] & seen["b"]  # the two slots never share a core
    assert seen["a"] | seen["b"] == set(cores)


@pytest.mark.slow
def test_a_users_thread_setting_turns_pinning_off(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    run_experiments(
        configs(tmp_path), tmp_path / "results", Options(executor="test-affinity", jobs=2), Console(file=io.StringIO())
    )
    log = (tmp_path / "results" / "a" / "seed-42" / "run.log").read_text()
    assert "OMP=5" in log
    assert _cores(re.search(r"Cpus_allowed_list:\s*(\S+)", log).group(1)) == set(os.sched_getaffinity(0))


def _cores(text: str) -> set[int]:
    found = set()
    for part in shlex.split(text.replace(",", " ")):
        low, _, high = part.partition("-")
        found |= set(range(int(low), int(high or low) + 1))
    return found
