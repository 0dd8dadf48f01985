"""The `slurm` executor on a real one-node Slurm (munged + slurmctld + slurmd started by the
`slurm_cluster` fixture): a grid with crashing, killed and hanging experiments (the hanging one meets
Slurm's time limit) finishes the others and records how each ended from Slurm's job state; a runner
killed with SIGKILL leaves its jobs running and a rerun waits for them, so every experiment runs
exactly once; Ctrl-C cancels every job it submitted. Plus the state table, without Slurm."""

from __future__ import annotations

import json
import signal

import pytest
from helpers.runner import fast_config, finished_count, start_runner, status, wait_until, write_grid
from helpers.slurm import job_field, node_name

from sft.runner.slurm_executor import SlurmOptions
from sft.runner.slurm_states import SLURM_STATES, JobState, from_sacct, from_scontrol, parse_exit_code, parse_scontrol


def test_slurm_states_map_to_how_a_run_ended():
    assert parse_exit_code("3:0") == 3 and parse_exit_code("0:9") == -9 and parse_exit_code("0:0") == 0
    assert parse_exit_code("137:0") == -9 and parse_exit_code("255:0") == 255
    assert parse_exit_code("") is None
    line = "JobId=7 JobName=sft:a:seed-42 JobState=TIMEOUT Reason=TimeLimit Restarts=1 ExitCode=0:15 NodeList=vm"
    timed_out = from_scontrol("7", parse_scontrol(line))
    assert not timed_out.active and timed_out.code() == -15 and timed_out.restarts == 1
    assert timed_out.end_reason() == "Slurm time limit reached (TIMEOUT)" and timed_out.name == "sft:a:seed-42"
    assert from_sacct("8|CANCELLED by 0|0:15|vm|None|x").end_reason() == "cancelled in Slurm (CANCELLED)"
    assert JobState("9", "COMPLETED", 0).code() == 0 and JobState("9", "COMPLETED").end_reason() == ""
    assert JobState("9", "FAILED", 3).code() == 3 and JobState("9", "FAILED", 3).end_reason() == ""
    assert JobState("9", "NODE_FAIL", 0).code() == 255  # failed, with no exit code of its own
    for waiting in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "SOME_FUTURE_STATE"):
        assert JobState("9", waiting).active  # unknown states: wait rather than call a live job dead
    assert not JobState("9", "UNKNOWN").active and "purged" in JobState("9", "UNKNOWN").end_reason()
    ended = {state for state, why in SLURM_STATES.items() if why is not None}
    assert {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"} <= ended


def test_slurm_options_are_checked(tmp_path, monkeypatch):
    from sft.runner.options import Options, executor_options, option_problems

    chosen, problems = executor_options("forkserver", [SlurmOptions(partition="gpu", args=["x"])])
    assert chosen is None
    assert any("--slurm-* options apply to --executor slurm only" in problem for problem in problems)
    assert any("--slurm-args 'x': write key=value" in problem for problem in problems)
    # the same options handed to the runner for another executor are refused there too
    problems = option_problems(Options(executor="forkserver", executor_options=SlurmOptions(partition="gpu")))
    assert problems == ["--slurm-* options apply to --executor slurm only; add it or drop them"]
    assert SlurmOptions(args=["--constraint=a100", "mail-type=END"]).sbatch_args() == {
        "constraint": "a100",
        "mail-type": "END",
    }
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert option_problems(Options(executor="slurm", executor_options=SlurmOptions(partition="gpu"))) == [
        "--executor slurm: sbatch is not on PATH; run sft on a Slurm login node"
    ]
    assert option_problems(Options(executor="slurm")) == [  # its defaults are checked too
        "--executor slurm: sbatch is not on PATH; run sft on a Slurm login node"
    ]


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_grid_survives_a_killed_runner_and_records_crashes_kills_and_time_limits(
    tmp_path, tiny_qwen, sentiment_data, slurm_cluster
):
    """One grid for both guarantees (Slurm's time limit alone takes a minute): the runner is killed with
    SIGKILL once every job is submitted, the rerun waits for the jobs still in Slurm instead of submitting
    them again, and then records each ending from Slurm's state."""
    faults = {"raises": "raise", "oom-killed": "sigkill", "hangs": "hang", "ok-1": "sleep:3", "ok-2": "sleep:3"}
    names = ["ok-1", "raises", "oom-killed", "hangs", "ok-2"]
    grid = write_grid(tmp_path, {name: fast_config(sentiment_data, tiny_qwen) for name in names})
    results = tmp_path / "results"
    arguments = ("--executor", "slurm", "--jobs", "5", "--slurm-time", "1", "--slurm-partition", "debug")
    runner = start_runner(grid, results, *arguments, faults=faults, marker="")
    submitted = lambda: all((results / name / "seed-42" / "slurm_job.json").exists() for name in names)  # noqa: E731
    wait_until(lambda: submitted() or runner.poll() is not None, 120, "five submitted jobs")
    assert runner.poll() is None, runner.communicate()[1][-3000:]
    runner.send_signal(signal.SIGKILL)
    runner.communicate()
    assert slurm_cluster.jobs(), "the killed runner's jobs should still be in Slurm"

    rerun = start_runner(grid, results, *arguments, faults=faults, marker="")
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 1, stderr[-3000:]
    for name in ("ok-1", "ok-2"):
        record = status(results, name)
        assert record["state"] == "done", record
        log = (results / name / "seed-42" / "run.log").read_text()
        assert finished_count(results, name) == 1 and log.count("submitted Slurm job") == 1, log[-2000:]
        assert "threads=1 cores=" in log  # --cpus-per-task 1: one intra-op thread
    assert "_" in status(results, "hangs")["slurm_job_id"]  # the five started together: one job array
    hangs_log = (results / "hangs" / "seed-42" / "run.log").read_text()
    assert "submitted by an earlier runner" in hangs_log and hangs_log.count("submitted Slurm job") == 1
    assert status(results, "hangs")["adopted"] is True
    expected = {
        "raises": ("exit code 1", "FAILED"),
        "oom-killed": ("killed by SIGKILL", "FAILED"),
        "hangs": ("Slurm time limit reached (TIMEOUT)", "TIMEOUT"),
    }
    for name, (reason, slurm_state) in expected.items():
        record = status(results, name)
        assert (record["state"], record["reason"], record["slurm_state"]) == ("failed", reason, slurm_state), record
        assert record["slurm_job_id"] and record["duration_seconds"] > 0
        assert f"failed: {name} seed 42 ({reason})" in stderr
    assert "injected failure" in status(results, "raises")["log_tail"]
    assert status(results, "oom-killed")["signal"] == "SIGKILL"
    assert status(results, "hangs")["slurm_reason"] == "TimeLimit"  # Slurm's own reason
    failures = json.loads((results / "aggregated_results.json").read_text())["failures"]
    assert sorted(failure["experiment"] for failure in failures) == sorted(expected)
    assert slurm_cluster.jobs() == []


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_interrupt_cancels_every_job_and_exits_130(tmp_path, tiny_qwen, sentiment_data, slurm_cluster):
    names = ["a", "b", "c"]
    grid = write_grid(tmp_path, {name: fast_config(sentiment_data, tiny_qwen) for name in names})
    results = tmp_path / "results"
    faults = dict.fromkeys(names, "hang")
    runner = start_runner(grid, results, "--executor", "slurm", "--jobs", "3", faults=faults, marker="")

    def all_submitted_two_running() -> bool:
        logs = [results / name / "seed-42" / "run.log" for name in names]
        running = sum(log.exists() and "sft runner: Slurm job" in log.read_text() for log in logs)
        return running == 2 and all((results / name / "seed-42" / "slurm_job.json").exists() for name in names)

    wait_until(lambda: all_submitted_two_running() or runner.poll() is not None, 120, "two running jobs")
    assert len(slurm_cluster.jobs()) == 3  # two running on the two CPUs, one pending
    runner.send_signal(signal.SIGINT)
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 130, stderr[-3000:]
    assert [status(results, name)["state"] for name in names] == ["interrupted"] * 3
    assert {status(results, name)["slurm_state"] for name in names} == {"CANCELLED"}
    assert slurm_cluster.jobs() == []


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.faults
def test_a_requeued_job_and_a_node_set_down_finish_each_experiment_exactly_once(
    tmp_path, tiny_qwen, sentiment_data, slurm_cluster
):
    """What preemption and node loss do, produced for real: `scontrol requeue` on a running job (as preemption
    does) makes Slurm run it again, and the runner waits for that second run; the node set DOWN while a job
    that may not be requeued runs ends it NODE_FAIL, which the runner records with Slurm's reason, and a
    rerun once the node is back submits it again. Each experiment finishes exactly once."""
    names = ["requeued", "lost"]
    grid = write_grid(tmp_path, {name: fast_config(sentiment_data, tiny_qwen) for name in names})
    results = tmp_path / "results"
    arguments = ("--executor", "slurm", "--jobs", "2", "--slurm-partition", "debug")
    faults = dict.fromkeys(names, "sleep:8")
    runner = start_runner(grid, results, *arguments, faults=faults, marker="")

    def running(name: str) -> bool:
        log = results / name / "seed-42" / "run.log"
        return log.exists() and "sft runner: Slurm job" in log.read_text()

    wait_until(lambda: all(running(name) for name in names) or runner.poll() is not None, 120, "both jobs running")
    assert runner.poll() is None, runner.communicate()[1][-3000:]
    job = {name: json.loads((results / name / "seed-42" / "slurm_job.json").read_text())["job_id"] for name in names}
    slurm_cluster.command("scontrol", "requeue", job["requeued"])  # what preemption with requeue does
    slurm_cluster.command("scontrol", "update", f"JobId={job['lost']}", "Requeue=0")  # a job Slurm may not requeue
    wait_until(lambda: job_field(slurm_cluster, job["requeued"], "JobState") == "PENDING", 30, "the requeue")
    node = node_name(slurm_cluster)
    slurm_cluster.command("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=sft-test-node-lost")
    _, stderr = runner.communicate(timeout=300)
    assert runner.returncode == 1, stderr[-3000:]
    lost = status(results, "lost")
    assert (lost["state"], lost["reason"], lost["slurm_state"]) == ("failed", "node failure (NODE_FAIL)", "NODE_FAIL")
    assert lost["slurm_reason"] == "NodeDown" and "failed: lost seed 42 (node failure (NODE_FAIL))" in stderr
    requeued = status(results, "requeued")
    assert (requeued["state"], requeued["slurm_restarts"]) == ("done", 1), requeued
    assert (results / "requeued" / "seed-42" / "run.log").read_text().count("sft runner: Slurm job") == 2
    assert finished_count(results, "requeued") == 1 and finished_count(results, "lost") == 0

    wait_until(lambda: "idle" in slurm_cluster.command("sinfo", "--noheader", "--format=%t"), 60, "the node back")
    rerun = start_runner(grid, results, *arguments, marker="")
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    for name in names:
        assert finished_count(results, name) == 1 and status(results, name)["state"] == "done"
    assert (results / "lost" / "seed-42" / "run.log").read_text().count("submitted Slurm job") == 2
    assert slurm_cluster.jobs() == []
