"""The report's search section and settings tables: a real Optuna study in a results folder's `_search/`, its
space stated from the trials' distributions, and the search space kept out of the varying-settings columns
(its distributions are no setting of the runs; the chosen values are)."""

from __future__ import annotations

import optuna

from sft.report.search import search_lines
from sft.report.tables import varying_settings
from sft.search.study import SearchRecord, search_folder, storage


def test_the_search_section_states_the_space_and_the_choice(tmp_path):
    folder = search_folder(tmp_path, "exp")
    study = optuna.create_study(storage=storage(folder, "sqlite"), study_name="s", direction="maximize")
    space = {
        "lora.r": optuna.distributions.CategoricalDistribution([4, 8]),
        "training.trainer_args.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    }
    for value in (0.3, 0.5):
        trial = study.ask(space)
        study.tell(trial, value)
    best = study.best_trial
    SearchRecord(
        experiment="exp", config_hash="h", study="s", storage="sqlite", metric="f1_macro", direction="maximize",
        trials=2, sampler="random", pruner="none", finished=True, best_trial=best.number, best_value=0.5,
        chosen=best.params,
    ).write(folder / SearchRecord.FILE)  # fmt: skip
    text = "\n".join(search_lines(tmp_path, []))
    assert "Space: `lora.r` one of 4, 8; `training.trainer_args.learning_rate` from 0.0001 to 0.01 (log scale)." in text
    assert f"Chosen (trial {best.number}, validation f1_macro 0.5000)" in text
    assert "2 of 2 trials finished (2 complete, 0 pruned, 0 failed)" in text


def test_a_search_space_is_no_varying_setting_but_its_sampler_is():
    rows = [
        {"settings": {"lora.r": 4, "search.sampler": "tpe", "search.space.lora.r.choices": [4, 8]}},
        {"settings": {"lora.r": 8, "search.sampler": "grid", "search.space.lora.r.choices": [2, 4, 8]}},
    ]
    assert varying_settings(rows) == ["lora.r", "search.sampler"]
