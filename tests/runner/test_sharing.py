"""Shared trainings in the grid runner (sft.runner.sharing): which run trains a key's adapter, which wait
for it and start after it in any slot, what a failed training does to them, and the dry run's two
tables. The scheduling is checked with a `sh` executor whose "training" publishes the store's marker
after a sleep (the real training under the key's lock is tested in tests/experiment/test_shared_training.py
and tests/runner/test_faults.py)."""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path

import pytest
from helpers import classification_config, merge, training_sections
from helpers.adapters import ready_marker
from rich.console import Console

from sft.config import parse_config
from sft.results.adapters import READY, SharedAdapter, shared_adapter
from sft.results.layout import Run
from sft.runner.executors import EXECUTORS, ProcessHandle
from sft.runner.options import Options
from sft.runner.scheduler import plan, run_experiments
from sft.runner.sharing import Trainings, training_plan

FAILING = "fails"  # the experiment whose sh "training" fails


@EXECUTORS.register("test-sh-train")
class TrainingShellExecutor:
    """Each job: log its start, "train" (sleep, then the store's marker) unless the adapter is ready, log
    its end, write results.json. The experiment named FAILING exits 3 before publishing."""

    def __init__(self, context):
        pass

    def start(self, job):
        run, config = job.run, job.config
        shared = shared_adapter(config, run)
        results = json.dumps(
            {"experiment": run.name, "seed": run.seed, "config_hash": config.config_hash(), "metrics": {},
             "task_type": "classification", "config": config.resolved()}
        )  # fmt: skip
        train = "true"
        if shared is not None:
            ready = shlex.quote(str(shared.folder / READY))
            content = shlex.quote(ready_marker(shared, run.name).to_json())
            publish = f"mkdir -p {shlex.quote(str(shared.folder))} && printf '%s' {content} > {ready}"
            fail = "exit 3" if run.name == FAILING else publish
            train = f'if [ ! -f {ready} ]; then echo "TRAINS $(date +%s.%N)"; sleep 0.6; {fail}; fi'
        script = (
            f'echo "START=$(date +%s.%N)"; {train}; sleep 0.2; '
            f"printf '%s' {shlex.quote(results)} > .results.tmp && mv .results.tmp results.json; "
            'echo "END=$(date +%s.%N)"'
        )
        return ProcessHandle(["sh", "-c", f"cd {shlex.quote(str(run.folder))} && {script}"], job.log_path, job.env())

    def close(self):
        pass


def grid_configs(tmp_path: Path) -> dict:
    """a1-a3 share one training, b1 has its own (another learning rate), zero is zero-shot."""
    base = classification_config(tmp_path / "data", tmp_path / "model")
    trained = merge(base, training_sections(shots=2))
    other = merge(trained, {"training": {"trainer_args": {"learning_rate": 5e-4}}})
    raw = {
        "a1": trained,
        "a2": merge(trained, {"inference": {"normalization": "mean"}}),
        "a3": merge(trained, {"inference": {"max_seq_length": 128}}),
        "b1": other,
        "zero": base,
    }
    return {name: parse_config(config) for name, config in raw.items()}


def run_grid(tmp_path: Path, configs: dict, **options) -> tuple[int, str]:
    out = io.StringIO()
    options = Options(executor="test-sh-train", **options)
    code = run_experiments(configs, tmp_path / "results", options, Console(file=out, width=300))
    return code, out.getvalue()


def times(results: Path, name: str) -> dict[str, float]:
    log = (results / name / "seed-42" / "run.log").read_text()
    return {
        key: float(line.split("=")[1]) for line in log.splitlines() for key in ("START", "END") if line.startswith(key)
    }


def test_training_keys_group_the_grid(tmp_path):
    configs = grid_configs(tmp_path)
    keys = {name: config.training_key() for name, config in configs.items()}
    assert keys["a1"] == keys["a2"] == keys["a3"] != keys["b1"] and keys["zero"] is None
    runs = [Run(name, 42, tmp_path) for name in configs]
    trainings = Trainings(configs, runs)
    a1, a2, b1 = runs[0], runs[1], runs[3]
    assert trainings.waits(a2, [a1]) and not trainings.waits(b1, [a1]) and not trainings.waits(a2, [b1])
    trainings.ended(a1, "exit code 3")
    assert "failed in a1 seed 42: exit code 3" in trainings.failure(a2) and trainings.failure(b1) is None
    shared = SharedAdapter(tmp_path, keys["a1"], 42)
    ready_marker(shared, "a1").write(shared.folder / READY)
    assert not trainings.waits(a2, [a1]) and trainings.failure(a2) is None  # published: nothing waits, nothing fails
    independent = Trainings(configs, [Run(name, 42, tmp_path, share_training=False) for name in configs])
    assert not independent.waits(Run("a2", 42, tmp_path, False), [Run("a1", 42, tmp_path, False)])


def test_training_plan_separates_trainings_from_evaluations(tmp_path):
    configs = grid_configs(tmp_path)
    results = tmp_path / "results"
    stored = SharedAdapter(results, configs["b1"].training_key(), 42)
    ready_marker(stored, "b1").write(stored.folder / READY)
    trainings, roles = training_plan(configs, plan(configs, results, Options()))
    assert [(t.action, t.by, t.users) for t in trainings] == [
        ("train", "a1", ["a1", "a2", "a3"]),
        ("reuse", None, ["b1"]),
    ]
    key_a, key_b = configs["a1"].training_key()[:12], stored.key[:12]
    assert {run.name: role for run, role in roles.items()} == {
        "a1": f"trains {key_a}", "a2": f"reuses {key_a}", "a3": f"reuses {key_a}", "b1": f"reuses {key_b}"
    }  # fmt: skip
    code, out = run_grid(tmp_path, configs, dry_run=True, jobs=2)
    assert code == 0 and "trainings" in out and "evaluations" in out
    assert "1 training(s) would run, 1 stored adapter(s) would be reused" in out
    assert not (results / "a1").exists()


@pytest.mark.slow
def test_runs_of_one_key_start_after_its_training_in_any_slot(tmp_path):
    configs = grid_configs(tmp_path)
    code, out = run_grid(tmp_path, configs, jobs=2)
    assert code == 0, out
    results = tmp_path / "results"
    logs = {name: (results / name / "seed-42" / "run.log").read_text() for name in configs}
    assert [name for name, log in logs.items() if "TRAINS" in log] == ["a1", "b1"]  # each key trained once
    found = {name: times(results, name) for name in configs}
    assert found["b1"]["START"] < found["a1"]["END"]  # another key trains alongside
    published = (SharedAdapter(results, configs["a1"].training_key(), 42).folder / READY).stat().st_mtime
    assert all(found[name]["START"] >= published - 0.05 for name in ("a2", "a3"))


@pytest.mark.slow
def test_a_failed_training_fails_the_runs_waiting_for_it_and_the_grid_goes_on(tmp_path):
    configs = grid_configs(tmp_path)
    configs = {FAILING: configs["a1"], **{name: configs[name] for name in ("a2", "a3", "b1", "zero")}}
    code, out = run_grid(tmp_path, configs, jobs=2, retries=1)
    assert code == 1
    results = tmp_path / "results"
    status = {name: json.loads((results / name / "seed-42" / "status.json").read_text()) for name in configs}
    assert status[FAILING]["state"] == "failed" and status[FAILING]["attempt"] == 2  # retried first
    for name in ("a2", "a3"):
        assert status[name]["state"] == "failed", status[name]
        assert f"failed in {FAILING} seed 42: exit code 3" in status[name]["reason"]
        assert "START" not in (results / name / "seed-42" / "run.log").read_text()  # never started
        assert f"failed: {name} seed 42 (its training" in out
    assert status["b1"]["state"] == status["zero"]["state"] == "done"
    failures = json.loads((results / "aggregated_results.json").read_text())["failures"]
    assert sorted(failure["experiment"] for failure in failures) == sorted([FAILING, "a2", "a3"])
    # the rerun retrains (the training failed); with the failing experiment fixed it would succeed
    code, out = run_grid(tmp_path, {name: configs[name] for name in ("a2", "a3")}, jobs=2)
    assert code == 0, out
