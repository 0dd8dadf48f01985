"""A search through the real CLI, the real grid runner and a real Optuna database: trials in their own
processes on validation only, a trial that fails on its own recorded while the search goes on, the runner
killed with SIGKILL mid-search and rerun (finished trials kept, the running one marked failed and retried,
no trial run twice, as many counted trials as asked), then only the chosen configuration tested, and the
report's search section rebuilt from the results folder."""

from __future__ import annotations

import json
import signal
import uuid

import pytest
from helpers import merge, training_sections
from helpers.runner import fast_config, start_runner, status, tagged, wait_until, write_grid

from sft.config import parse_config
from sft.runner.options import Options
from sft.runner.scheduler import plan
from sft.search.driver import trial_run
from sft.search.study import INTERRUPTED_ATTR, SearchRecord, open_study, search_folder

pytestmark = pytest.mark.slow

SPACE = {
    "training.trainer_args.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "lora.r": {"type": "categorical", "choices": [2, 4]},
}


def test_a_killed_search_resumes_exactly_once_and_tests_only_the_chosen_configuration(
    tmp_path, tiny_qwen, sentiment_data
):
    raw = merge(fast_config(sentiment_data, tiny_qwen), training_sections(shots=2, epochs=1))
    raw["dataset"]["validation_split"] = "validation"
    raw["training"] |= {"eval_every": 1, "eval_examples": 6}
    raw["search"] = {"space": SPACE, "trials": 3, "sampler": "random", "pruner": "asha", "min_resource": 1}
    grid = write_grid(tmp_path, {"searched": raw})
    results, marker = tmp_path / "results", uuid.uuid4().hex
    config = parse_config(raw)
    folder = search_folder(results, "searched")
    faults = {"searched.trial-0000": "raise", "searched.trial-0001": "sleep:60"}

    def study():
        from sft.search.study import study_name

        return open_study(folder, config.search, study_name(config))

    def states() -> dict[int, str]:
        if not (folder / "study.db").exists() or not (folder / "search.json").exists():
            return {}
        return {trial.number: trial.state.name for trial in study().get_trials(deepcopy=False)}

    runner = start_runner(grid, results, "--jobs", "2", faults=faults, marker=marker)
    wait_until(
        lambda: (states().get(0) == "FAIL" and states().get(1) == "RUNNING") or runner.poll() is not None,
        240,
        "a failed trial beside a running one",
    )
    assert runner.poll() is None, runner.communicate()[1][-3000:]
    runner.send_signal(signal.SIGKILL)
    runner.communicate()
    wait_until(lambda: not tagged(marker), 20, "the killed runner's children to die")
    assert states()[1] == "RUNNING"  # the killed runner left it so

    rerun = start_runner(grid, results, "--jobs", "2", faults=faults, marker=marker)
    _, stderr = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, stderr[-3000:]
    trials = study().get_trials(deepcopy=False)
    interrupted = [trial for trial in trials if trial.user_attrs.get(INTERRUPTED_ATTR)]
    counted = [trial for trial in trials if trial.state.is_finished() and trial not in interrupted]
    assert 1 in [trial.number for trial in interrupted]  # the one the runner was killed in (maybe trial 2 too)
    assert len(counted) == 3
    for stopped in interrupted:  # each retried once with its values, and finished
        (retry,) = [trial for trial in trials if trial.user_attrs.get("retry_of") == stopped.number]
        assert retry.state.name in ("COMPLETE", "PRUNED")
        # a trial the kill cut before its values were drawn (trial 2, asked but not yet handed over) has none to
        # repeat: its retry draws them
        assert retry.params == stopped.params or (stopped.number != 1 and not stopped.params)
    failed = next(trial for trial in trials if trial.number == 0)  # failed on its own: recorded, counted
    assert failed.state.name == "FAIL" and failed.user_attrs["failure"] and failed in counted
    for trial in counted:  # each trial's process ran it once; none predicted the test split
        trial_folder = trial_run(folder, "searched", trial.number, 42).folder
        log = (trial_folder / "run.log").read_text()
        assert log.count(f"Trial {trial.number} of the search") == (trial.number != 0), log[-2000:]
        assert not (trial_folder / "predictions.jsonl").exists()
        assert not (trial_folder / "results.json").exists()

    record = SearchRecord.read(folder / SearchRecord.FILE)
    assert record.finished and record.chosen == study().best_trial.params
    final = results / "searched" / "seed-42"
    chosen = json.loads((final / "config.json").read_text())
    assert chosen["lora"]["r"] == record.chosen["lora.r"]
    assert chosen["training"]["trainer_args"]["learning_rate"] == record.chosen["training.trainer_args.learning_rate"]
    assert json.loads((final / "results.json").read_text())["experiment"] == "searched"
    assert status(results, "searched")["state"] == "done"
    rows = plan({"searched": config}, results, Options(seeds=[42]))  # --dry-run knows the chosen config
    assert [(action, why) for _, action, why in rows] == [("skip", "finished with the same config hash")]

    report = (results / "aggregated_results.md").read_text()
    assert "## Search: searched" in report and "interrupted (retried)" in report
    assert "Test f1_macro of the chosen configuration" in report or "Test accuracy" in report
    assert (folder / "history.png").exists()
    assert not tagged(marker)
