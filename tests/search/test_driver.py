"""The search driver's bookkeeping on a real Optuna SQLite study, without training: trials handed over with
their markers, a runner that dies with a trial running (the next runner marks it interrupted and retries its
values), trials that fail on their own (counted), and the chosen configuration's runs once every trial has
finished."""

from __future__ import annotations

from pathlib import Path

from helpers import classification_config, merge, training_sections

from sft.config import parse_config
from sft.results.states import StatusRecord
from sft.runner.options import Options
from sft.runner.scheduler import plan, searched_configs
from sft.search.driver import Search
from sft.search.space import with_values
from sft.search.study import INTERRUPTED_ATTR, SearchRecord, TrialRecord, open_study

SPACE = {"lora.r": {"type": "categorical", "choices": [2, 4, 8]},
         "training.trainer_args.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}  # fmt: skip


def config(trials: int = 3, sampler: str = "random", space: dict | None = None):
    raw = merge(classification_config(Path("data"), Path("model")), training_sections(shots=2))
    raw["dataset"]["validation_split"] = "validation"
    raw["training"]["eval_every"] = 1
    raw["search"] = {"space": space or SPACE, "trials": trials, "sampler": sampler, "pruner": "none"}
    return parse_config(raw)


def test_a_search_survives_its_runner_and_counts_exactly_the_trials_asked(tmp_path):
    searched = config()
    first = Search("exp", searched, tmp_path, [7], share=True)
    planned = first.more(lambda _: 2)
    assert [item.run.name for item in planned] == ["exp.trial-0000", "exp.trial-0001"]
    assert planned[0].run.folder == tmp_path / "_search" / "exp" / "exp.trial-0000" / "seed-7"
    marker = TrialRecord.read(planned[0].run.folder / TrialRecord.FILE)
    assert planned[0].config.lora is not None and planned[0].config.lora.r == marker.params["lora.r"]
    assert first.more(lambda _: 0) == []  # two running, one to ask, but no free slot
    first.study.tell(marker.number, 0.5)  # trial 0's process told its outcome; then the runner dies
    assert first.finished(planned[0].run) is True and first.finished(planned[1].run) is False

    second = Search("exp", searched, tmp_path, [7], share=True)  # the rerun
    trials = second.study.get_trials(deepcopy=False)
    assert trials[1].state.name == "FAIL" and trials[1].user_attrs[INTERRUPTED_ATTR]
    assert second.counted() == 1
    retry, fresh = second.more(lambda _: 5)
    assert retry.config.lora == planned[1].config.lora  # the interrupted trial's values again
    assert second.study.get_trials(deepcopy=False)[retry_number(retry)].user_attrs["retry_of"] == 1
    second.study.tell(retry_number(retry), 0.9)
    ended = StatusRecord(experiment=fresh.run.name, seed=7, state="failed", reason="exit code 3")
    second.ended(fresh.run, ended)  # failed on its own: counted, with the reason
    assert second.counted() == 3
    finals = second.more(lambda _: 5)
    assert [(item.run.name, item.run.seed, item.failure) for item in finals] == [("exp", 7, None)]
    assert finals[0].config.lora == retry.config.lora  # the best trial's values
    record = SearchRecord.read(tmp_path / "_search" / "exp" / SearchRecord.FILE)
    assert record.finished and record.best_value == 0.9 and record.chosen == retry_params(second, retry)
    assert second.more(lambda _: 5) == []


def retry_number(item) -> int:
    return TrialRecord.read(item.run.folder / TrialRecord.FILE).number


def retry_params(search: Search, item) -> dict:
    return search.study.get_trials(deepcopy=False)[retry_number(item)].params


def test_a_trial_tells_the_last_point_of_a_grid_without_stopping_anything(tmp_path):
    """Optuna's grid sampler stops the study once the grid is covered, which only an optimize loop allows: a
    trial's process tells its outcome through a study opened without the search's sampler."""
    searched = config(trials=3, sampler="grid", space={"lora.r": SPACE["lora.r"]})
    assert searched.search is not None
    driver = Search("exp", searched, tmp_path, [7], share=True)
    planned = []
    for _ in range(3):
        driver.next_check = 0.0  # the runner's next poll, a second later
        planned += driver.more(lambda _: 1)
    assert sorted(item.config.lora.r for item in planned if item.config.lora) == [2, 4, 8]
    for item in planned:
        marker = TrialRecord.read(item.run.folder / TrialRecord.FILE)
        open_study(driver.folder, searched.search, marker.study, samples=False).tell(marker.number, 0.5)
    driver.next_check = 0.0
    assert [item.run.name for item in driver.more(lambda _: 1)] == ["exp"]


def test_the_dry_run_plans_a_searched_experiment_with_its_chosen_values(tmp_path):
    searched = config()
    rows = plan({"exp": searched}, tmp_path, Options(seeds=[7]))
    assert [(run.name, action) for run, action, _ in rows] == [("exp", "search")]
    assert "not started" in rows[0][2]

    search = Search("exp", searched, tmp_path, [7], share=True)
    for item in search.more(lambda _: 3):
        search.study.tell(TrialRecord.read(item.run.folder / TrialRecord.FILE).number, 0.5)
    assert "in progress" in plan({"exp": searched}, tmp_path, Options(seeds=[7]))[0][2]
    search.next_check = 0.0  # the runner would ask again after its poll interval
    (final,) = search.more(lambda _: 3)  # the search finishes: its record holds the chosen values
    effective, waiting = searched_configs({"exp": searched}, tmp_path)
    chosen = SearchRecord.read(tmp_path / "_search" / "exp" / SearchRecord.FILE).chosen
    assert waiting == {} and effective["exp"].config_hash() == with_values(searched, chosen).config_hash()
    assert effective["exp"].config_hash() == final.config.config_hash() != searched.config_hash()
    assert [(run.name, action, why) for run, action, why in plan({"exp": searched}, tmp_path, Options(seeds=[7]))] == [
        ("exp", "run", "no results yet")
    ]
    changed = config(trials=2)
    assert "config changed" in plan({"exp": changed}, tmp_path, Options(seeds=[7]))[0][2]
