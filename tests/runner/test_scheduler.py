"""The grid runner's scheduling, resume, locks and dry run (sft.runner.scheduler, sft.runner.resume), and the two
real launch paths that are not the default: data-parallel `accelerate launch` on two CPU processes and
a local Ray instance.

Scheduling and resume are checked with a `sh` executor: real processes in their own sessions whose
work is a sleep and a results.json carrying the config hash, so each check takes a second."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, classification_config, merge, training_sections
from helpers.runner import configs
from rich.console import Console

from sft.config import parse_config
from sft.results.layout import Run
from sft.runner.executors import EXECUTORS, ProcessHandle
from sft.runner.options import Options
from sft.runner.resume import RunLock
from sft.runner.scheduler import plan, run_experiments


@EXECUTORS.register("test-sh")
class ShellExecutor:
    """Each job: log its GPUs and start/end times, count itself, sleep, write results.json atomically."""

    def __init__(self, context):
        pass

    def start(self, job):
        folder = job.run.folder
        run, config = job.run, job.config
        results = json.dumps(
            {"experiment": run.name, "seed": run.seed, "config_hash": config.config_hash(), "metrics": {},
             "task_type": "classification", "config": config.resolved()}
        )  # fmt: skip
        script = (
            'echo "GPUS=$CUDA_VISIBLE_DEVICES START=$(date +%s.%N)"; echo x >> executions; sleep 0.4; '
            f"printf '%s' {shlex.quote(results)} > .results.tmp && mv .results.tmp results.json; "
            'echo "END=$(date +%s.%N)"'
        )
        return ProcessHandle(["sh", "-c", f"cd {shlex.quote(str(folder))} && {script}"], job.log_path, job.env())

    def close(self):
        pass


def grid(tmp_path, configs_, **options) -> tuple[int, str]:
    out = io.StringIO()
    code = run_experiments(
        configs_, tmp_path / "results", Options(executor="test-sh", **options), Console(file=out, width=300)
    )
    return code, out.getvalue()


def run_grid_cli(grid_file: Path, results: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sft.cli", "run-experiments", str(grid_file), "--results-path", str(results)]
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    return subprocess.run([*command, *arguments], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def executions(tmp_path: Path, name: str, seed: int) -> int:
    file = Run(name, seed, tmp_path / "results").folder / "executions"
    return len(file.read_text().split()) if file.exists() else 0


@pytest.mark.slow
def test_gpu_slots_pack_multi_gpu_experiments_and_never_share_a_gpu(tmp_path):
    base = classification_config(tmp_path / "data", tmp_path / "model")
    needs = {"one": 1, "two": 2, "three": 3, "four": 1, "five": 1}
    grid_configs = {name: parse_config(merge(base, {"resources": {"gpus": n}})) for name, n in needs.items()}
    code, output = grid(tmp_path, grid_configs, gpus=["0", "1", "2"])
    assert code == 0, output
    spans = {}
    for name in needs:
        log = (Run(name, 42, tmp_path / "results").folder / "run.log").read_text()
        lines = [line for line in log.splitlines() if line.startswith(("GPUS=", "END="))]
        fields = dict(part.split("=") for line in lines for part in line.split())
        spans[name] = (set(fields["GPUS"].split(",")), float(fields["START"]), float(fields["END"]))
        assert len(spans[name][0]) == needs[name]
        assert json.loads((Run(name, 42, tmp_path / "results").folder / "status.json").read_text())["gpus"]
    for first, (gpus_1, start_1, end_1) in spans.items():
        for second, (gpus_2, start_2, end_2) in spans.items():
            if first < second and start_1 < end_2 and start_2 < end_1:
                assert not gpus_1 & gpus_2, f"{first} and {second} shared a GPU at the same time"
    one, two = spans["one"], spans["two"]
    assert one[1] < two[2] and two[1] < one[2], "a 1-GPU and a 2-GPU experiment should run side by side"


@pytest.mark.slow
def test_resume_skips_finished_reruns_changed_configs_and_respects_locks(tmp_path):
    code, output = grid(tmp_path, configs(tmp_path), seeds=[1, 2], jobs=2)
    assert code == 0, output
    counts = {(name, seed): executions(tmp_path, name, seed) for name in "ab" for seed in (1, 2)}
    assert set(counts.values()) == {1}
    stale = Run("a", 1, tmp_path / "results").folder / ".status.json.k1ll3d.tmp"  # a runner killed mid-write
    stale.write_text("{")

    code, output = grid(tmp_path, configs(tmp_path), seeds=[1, 2], jobs=2)
    assert code == 0 and output.count("skipped (finished with the same config hash)") == 4, output
    assert not stale.exists()  # the finished run is skipped, and its lock holder removed the killed write
    assert all(executions(tmp_path, name, seed) == 1 for name, seed in counts)

    changed = configs(tmp_path, b={"inference": {"batch_size": 2}})
    rows = plan(changed, tmp_path / "results", Options(seeds=[1, 2]))
    assert [(run.name, run.seed, action) for run, action, _ in rows] == [
        ("a", 1, "skip"), ("a", 2, "skip"), ("b", 1, "run"), ("b", 2, "run"),
    ]  # fmt: skip
    assert "config changed" in rows[2][2]
    code, output = grid(tmp_path, changed, seeds=[1, 2], jobs=2)
    assert code == 0, output
    folder = Run("b", 1, tmp_path / "results").folder
    kept = list((folder / "previous").glob("*/results.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["config_hash"] == configs(tmp_path)["b"].config_hash()
    assert json.loads((folder / "results.json").read_text())["config_hash"] == changed["b"].config_hash()
    assert executions(tmp_path, "a", 1) == 1 and executions(tmp_path, "b", 1) == 1  # the old count moved aside

    other_runner = RunLock(Run("a", 1, tmp_path / "results").folder)
    assert other_runner.acquire()
    try:
        assert not RunLock(other_runner.path.parent).acquire()
        code, output = grid(tmp_path, changed, seeds=[1, 2], jobs=2, force=True)
    finally:
        other_runner.release()
    assert code == 0, output
    assert "a seed 1: skipped (running in another runner)" in output
    assert "not run here: a seed 1 is being run by another runner" in output
    assert executions(tmp_path, "a", 1) == 1  # locked: untouched
    assert executions(tmp_path, "a", 2) == 1 and len(list(Run("a", 2, tmp_path / "results").folder.glob("previous/*")))


@pytest.mark.faults
@pytest.mark.slow
def test_a_corrupt_results_json_is_set_aside_and_the_console_says_where(tmp_path):
    folder = Run("a", 42, tmp_path / "results").folder
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{not json")
    code, output = grid(tmp_path, {"a": configs(tmp_path)["a"]})
    assert code == 0
    aside = next((folder / "previous").iterdir())
    assert (aside / "results.json").read_text() == "{not json"
    assert f"a seed 42: results.json unreadable (kept aside); the old files are in {aside}" in output


def test_options_are_checked_before_anything_runs(tmp_path):
    from sft.config import ConfigError
    from sft.runner.options import check_options

    big = configs(tmp_path, a={"resources": {"gpus": 4}})
    with pytest.raises(ConfigError) as error:
        check_options(big, Options(gpus=["0", "1"], executor="forkserve", retries=-1))
    messages = error.value.messages
    assert any("unknown executor 'forkserve' (did you mean 'forkserver'?)" in message for message in messages)
    assert any(message.startswith("a: resources.gpus is 4 but --gpus gives 2") for message in messages)
    assert any("--retries" in message for message in messages)
    assert not (tmp_path / "results").exists()


def test_resources_are_part_of_the_config_hash(tmp_path):
    plain = configs(tmp_path)["a"]
    launched = configs(tmp_path, a={"resources": {"num_processes": 2, "launcher": "accelerate"}})["a"]
    assert plain.config_hash() != launched.config_hash()  # data parallel changes the effective batch size
    expected = {"gpus": 1, "launcher": "python", "num_processes": None, "cpus": None, "memory_gb": None}
    expected["ray_resources"] = None
    assert plain.resolved()["resources"] == expected


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, tiny_qwen, sentiment_data):
    grid_file = tmp_path / "grid.json"
    config = classification_config(sentiment_data, tiny_qwen)
    grid_file.write_text(json.dumps({"configs": {"first": config, "second": config}}))
    results = tmp_path / "results"
    done = Run("first", 7, results).folder
    done.mkdir(parents=True)
    finished = {"experiment": "first", "seed": 7, "config_hash": parse_config(config).config_hash(),
                "task_type": "classification", "metrics": {}, "config": parse_config(config).resolved()}  # fmt: skip
    (done / "results.json").write_text(json.dumps(finished))
    before = sorted(results.rglob("*"))
    process = run_grid_cli(grid_file, results, "--seeds", "7,8", "--dry-run")
    assert process.returncode == 0, process.stderr
    lines = [line for line in process.stderr.splitlines() if "first" in line or "second" in line]
    assert len(lines) == 4 and "skip" in lines[0] and "finished with the same config hash" in lines[0]
    assert all("run" in line and "no results yet" in line for line in lines[1:])
    assert "3 would run, 1 would be skipped" in process.stderr
    assert sorted(results.rglob("*")) == before


@pytest.mark.slow
def test_accelerate_launch_trains_data_parallel_on_two_cpu_processes(tmp_path, tiny_qwen, sentiment_data):
    config = merge(
        classification_config(sentiment_data, tiny_qwen, **training_sections(shots=2)),
        {"dataset": {"shots": 2, "max_n_test": 4}, "resources": {"launcher": "accelerate", "num_processes": 2}},
    )
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps({"configs": {"ddp": config}}))
    results = tmp_path / "results"
    process = run_grid_cli(grid_file, results, "--jobs", "2", "--no-check-data")
    assert process.returncode == 0, process.stderr[-3000:]
    folder = Run("ddp", 42, results).folder
    outcome = json.loads((folder / "results.json").read_text())
    assert outcome["training"]["world_size"] == 2
    log = (folder / "run.log").read_text()
    assert log.count("Training on") == 2  # both ranks trained
    assert log.count("Finished ddp seed 42") == 1  # rank 0 alone evaluated and wrote results.json
    assert (results / outcome["adapter"] / "adapter_config.json").is_file()  # the shared adapter, by rank 0


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_runs_records_failures_and_resumes(tmp_path, tiny_qwen, sentiment_data):
    pytest.importorskip("ray")
    good = merge(classification_config(sentiment_data, tiny_qwen), {"dataset": {"max_n_test": 4}})
    broken = classification_config(sentiment_data, tmp_path / "no-such-model")
    searched = merge(good, training_sections(shots=2, epochs=1))  # its trials are Ray tasks too
    searched["dataset"] |= {"validation_split": "validation"}
    searched["training"] |= {"eval_every": 1, "eval_examples": 4}
    space = {"training.trainer_args.learning_rate": {"type": "categorical", "choices": [1e-4, 1e-3]}}
    searched["search"] = {"space": space, "trials": 2, "sampler": "grid", "pruner": "none"}
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps({"configs": {"good": good, "broken": broken, "searched": searched}}))
    results = tmp_path / "results"
    # --no-check-models: the model preflight would refuse the broken model before the run; this test
    # is about a run that fails on Ray
    arguments = ("--executor", "ray", "--jobs", "2", "--no-check-data", "--no-check-models")
    first = run_grid_cli(grid_file, results, *arguments)
    assert first.returncode == 1, first.stderr[-3000:]
    good_status = json.loads((Run("good", 42, results).folder / "status.json").read_text())
    assert good_status["state"] == "done" and good_status["executor"] == "ray"
    broken_status = json.loads((Run("broken", 42, results).folder / "status.json").read_text())
    assert broken_status["state"] == "failed" and "no-such-model" in broken_status["log_tail"]
    assert json.loads((Run("good", 42, results).folder / "results.json").read_text())["experiment"] == "good"
    trials = sorted((results / "_search" / "searched").glob("searched.trial-*/seed-42/status.json"))
    assert [json.loads(path.read_text())["executor"] for path in trials] == ["ray", "ray"]
    assert json.loads((Run("searched", 42, results).folder / "status.json").read_text())["executor"] == "ray"
    second = run_grid_cli(grid_file, results, *arguments)
    assert "searched seed 42: skipped (finished with the same config hash)" in second.stderr
    assert len(list((results / "_search" / "searched").glob("searched.trial-*"))) == 2  # no trial twice
    assert "good seed 42: skipped (finished with the same config hash)" in second.stderr, second.stderr[-3000:]
    assert (Run("good", 42, results).folder / "run.log").read_text().count("Finished good seed 42") == 1
