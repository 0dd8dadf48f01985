"""The `ray` executor across nodes: a Ray head and a second Ray node started as separate processes on
this machine (`ray start --head`, `ray start --address`), each with a custom resource, the results
folder shared by both. Experiments land on the node whose resource they ask for, and a node killed in
the middle of an experiment is recorded as that experiment's failure while the grid goes on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import REPO, merge
from helpers.runner import HOOKS, fast_config, start_runner, status, wait_until, write_grid
from helpers.slurm import free_port

pytestmark = [pytest.mark.slow, pytest.mark.ray]


FAULTS = {"here": "sleep:2", "there": "sleep:1", "victim": "hang"}


def ray_start(log: Path, *arguments: str) -> subprocess.Popen:
    """`ray start --block` in its own process group: stopping the group stops that node whole. The
    node's processes start the experiments, so they carry the fault hooks (see tests/fault_hooks)."""
    command = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--disable-usage-stats", *arguments]
    # Ray 2.5x+ turns on token authentication for a new head; this cluster listens on loopback only
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env["PYTHONPATH"] = os.pathsep.join([str(HOOKS), str(REPO)])
    env |= {"SFT_TEST_FAULTS": json.dumps(FAULTS), "SFT_TEST_FAULTS_CHILDREN_ONLY": "1"}
    with open(log, "w") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(node: subprocess.Popen) -> None:
    for signum, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        if node.poll() is not None:
            break
        try:
            os.killpg(node.pid, signum)
            node.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)  # what the node started in its group (raylet, workers)


def alive_nodes(address: str) -> int:
    command = [str(Path(sys.executable).parent / "ray"), "status", "--address", address]
    output = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    active = output.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in output else ""
    return sum(" node_" in line for line in active.splitlines())


@pytest.fixture
def two_ray_nodes(tmp_path):
    pytest.importorskip("ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = f"/tmp/sft-ray-{uuid.uuid4().hex[:8]}"  # Ray's socket paths must stay short
    common = ("--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0")
    head = ray_start(
        tmp_path / "head.log", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
        *common, '--resources={"first": 1}',
    )  # fmt: skip
    nodes = [head]
    try:
        time.sleep(3)
        second = ray_start(tmp_path / "second.log", f"--address={address}", *common, '--resources={"second": 1}')
        nodes.append(second)
        deadline = time.time() + 90
        while alive_nodes(address) < 2:
            if time.time() > deadline or head.poll() is not None or second.poll() is not None:
                logs = "".join((tmp_path / name).read_text()[-1500:] for name in ("head.log", "second.log"))
                pytest.skip(f"a two-node Ray did not start here: {logs}")
            time.sleep(1)
        yield address, second
    finally:
        for node in reversed(nodes):
            stop(node)


def test_ray_places_experiments_on_both_nodes_and_survives_a_lost_node(
    tmp_path, tiny_qwen, sentiment_data, two_ray_nodes
):
    address, second = two_ray_nodes
    base = fast_config(sentiment_data, tiny_qwen)
    configs = {
        "here": merge(base, {"resources": {"ray_resources": {"first": 1}}}),
        "there": merge(base, {"resources": {"ray_resources": {"second": 1}}}),
        "victim": merge(base, {"resources": {"ray_resources": {"second": 1}}}),
    }
    grid = write_grid(tmp_path, configs)
    results = tmp_path / "results"
    arguments = ("--executor", "ray", "--ray-address", address, "--jobs", "3")
    runner = start_runner(grid, results, *arguments, faults=FAULTS, marker="")
    victim_log = results / "victim" / "seed-42" / "run.log"

    def victim_running() -> bool:
        return victim_log.exists() and "threads=" in victim_log.read_text()

    wait_until(lambda: victim_running() or runner.poll() is not None, 240, "the victim's experiment to start")
    assert runner.poll() is None, runner.communicate()[1][-3000:]
    stop(second)  # the node dies with the experiment on it
    _, stderr = runner.communicate(timeout=240)
    assert runner.returncode == 1, stderr[-3000:]

    here, there, victim = (status(results, name) for name in ("here", "there", "victim"))
    assert here["state"] == "done" and there["state"] == "done", stderr[-3000:]
    assert here["ray_node"] and there["ray_node"] and here["ray_node"] != there["ray_node"]
    assert f"Ray node {there['ray_node']}" in victim_log.read_text()  # it ran on the second node
    assert victim["state"] == "failed" and victim["reason"].startswith("Ray worker lost"), victim
    assert "threads=1" in (results / "here" / "seed-42" / "run.log").read_text()  # num_cpus 1: one thread
    for name in ("here", "there"):
        assert json.loads((results / name / "seed-42" / "results.json").read_text())["experiment"] == name
