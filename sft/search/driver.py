"""The search of each searched experiment, as runs handed to the grid runner.

The runner asks `Searches.more` for runs whenever it polls. A search asks its study for as many trials as
the free slots take (never more than `search.trials` minus those finished or running), writes each trial's
marker and config, and hands the trial over as an ordinary run in `RESULTS/_search/<experiment>/` (its own
process on the grid's executor, its slot's CPU share, its timeout and retries; its adapter is never shared,
as a pruned trial's is cut short). When every trial has finished, the best completed trial's values are set
into the experiment's config and its runs (`RESULTS/<experiment>/seed-<n>` for every seed of `--seeds`) are
handed over: the only runs that predict the test split.

Exactly once: a trial is finished when its own process told the study (`sft.search.trial`). A trial whose
process ended without telling (a crash, a timeout) is marked failed with the reason and counts as one of the
trials asked. A trial the runner was stopped in (Ctrl-C, or the runner killed: the study still says
running and no runner holds the trial's folder) is marked failed as interrupted and its values are queued
again, so the rerun retries it and does not count it. Finished trials are never run again, and the search
ends with exactly `search.trials` counted trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sft.config import ExperimentConfig
from sft.config.parsing import describe_errors
from sft.results.files import lock_held_elsewhere
from sft.results.layout import Run
from sft.results.states import RunState, StatusRecord
from sft.search.space import distributions, with_values
from sft.search.study import (
    INTERRUPTED_ATTR,
    SearchRecord,
    TrialRecord,
    direction,
    open_study,
    search_folder,
    storage,
    study_name,
)

TRIAL_MARK = ".trial-"
LOCK_NAME = ".lock"  # the run lock's file name (sft.runner.resume)
# The runner polls every few milliseconds; the study database is read at most this often between trial ends.
CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Planned:
    """A run for the grid runner: its config, or why it fails without starting."""

    run: Run
    config: ExperimentConfig
    failure: str | None = None


def trial_run(folder: Path, experiment: str, number: int, seed: int) -> Run:
    """The run of trial `number` of `experiment`'s search, `<experiment>.trial-<number>` in the search folder (its
    name says whose trial it is in the runner's progress and status files); it never shares its adapter, as a
    pruned trial's training is partial."""
    return Run(f"{experiment[:180]}{TRIAL_MARK}{number:04d}", seed, folder, share_training=False)


class Search:
    """One searched experiment: its study, the trials it has handed over, and its final runs."""

    def __init__(self, name: str, config: ExperimentConfig, results_path: Path, seeds: list[int], share: bool):
        assert config.search is not None
        self.name, self.config, self.search = name, config, config.search
        self.results_path, self.seeds, self.share = results_path, seeds, share
        self.folder = search_folder(results_path, name)
        self.metric, goal = direction(config)
        self.study = open_study(self.folder, self.search, study_name(config), goal)
        self.storage = self.study._storage  # the same connection: Study keeps its storage object
        self.space = distributions(self.search)
        self.running: dict[Run, int] = {}  # trial runs handed over -> trial id
        self.done = False
        self.next_check = 0.0  # the study is read at most every CHECK_SECONDS, and whenever a trial ended
        self.record = SearchRecord(
            experiment=name, config_hash=config.config_hash(), study=self.study.study_name,
            storage=self.search.storage, metric=self.metric, direction=goal, trials=self.search.trials,
            sampler=self.search.sampler, pruner=self.search.pruner,
        )  # fmt: skip
        self._recover()
        self.record.write(self.folder / SearchRecord.FILE)

    # -- the study's state ---------------------------------------------------------------------------------------

    def _trials(self, *states: Any) -> list[Any]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def counted(self) -> int:
        """Trials that count as asked: complete, pruned, or failed on their own (not interrupted)."""
        from optuna.trial import TrialState

        return sum(
            1
            for trial in self._trials(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            if not trial.user_attrs.get(INTERRUPTED_ATTR)
        )

    def _recover(self) -> None:
        """Trials the study says are running that no runner runs (their runner was killed): failed as
        interrupted, their values queued again."""
        from optuna.trial import TrialState

        for trial in self._trials(TrialState.RUNNING):
            folder = trial_run(self.folder, self.name, trial.number, self.seeds[0]).folder
            if lock_held_elsewhere(folder / LOCK_NAME):
                continue  # another runner runs it
            self._interrupted(trial._trial_id, trial.number, trial.params)

    def _interrupted(self, trial_id: int, number: int, params: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        self.storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        self.study.enqueue_trial(params, user_attrs={"retry_of": number})

    # -- what the runner asks ------------------------------------------------------------------------------------

    def more(self, fits: Callable[[ExperimentConfig], int]) -> list[Planned]:
        if self.done or time.monotonic() < self.next_check:
            return []
        from optuna.trial import TrialState

        self.next_check = time.monotonic() + CHECK_SECONDS

        running = len(self._trials(TrialState.RUNNING))
        missing = self.search.trials - self.counted() - running
        if missing > 0:
            return self._ask(min(missing, fits(self.config)))
        if running:
            return []
        return self._finals()

    def _ask(self, count: int) -> list[Planned]:
        from optuna.trial import TrialState

        planned = []
        for _ in range(count):
            trial = self.study.ask(self.space)
            try:
                config = with_values(self.config, trial.params)
            except ValidationError as error:  # a sampled value the config refuses: a failed trial, recorded
                self.storage.set_trial_user_attr(trial._trial_id, "failure", "; ".join(describe_errors(error)))
                self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                continue
            run = trial_run(self.folder, self.name, trial.number, self.seeds[0])
            run.folder.mkdir(parents=True, exist_ok=True)
            TrialRecord(
                experiment=self.name, study=self.study.study_name, storage=self.search.storage,
                trial_id=trial._trial_id, number=trial.number, params=trial.params, metric=self.metric,
            ).write(run.folder / TrialRecord.FILE)  # fmt: skip
            self.running[run] = trial._trial_id
            planned.append(Planned(run, config))
        return planned

    def _finals(self) -> list[Planned]:
        """The experiment's runs with the chosen values, once every trial has finished."""
        from optuna.trial import TrialState

        self.done = True
        complete = self._trials(TrialState.COMPLETE)
        if not complete:
            self.record = self.record.model_copy(update={"finished": True})
            self.record.write(self.folder / SearchRecord.FILE)
            reason = f"its search finished without a completed trial (see {self.folder})"
            return [Planned(Run(self.name, seed, self.results_path, self.share), self.config, reason)
                    for seed in self.seeds]  # fmt: skip
        best = self.study.best_trial
        chosen = with_values(self.config, best.params)
        self.record = self.record.model_copy(
            update={"finished": True, "best_trial": best.number, "best_value": best.value, "chosen": best.params}
        )
        self.record.write(self.folder / SearchRecord.FILE)
        return [Planned(Run(self.name, seed, self.results_path, self.share), chosen) for seed in self.seeds]

    def finished(self, run: Run) -> bool | None:
        """Whether a trial run finished (told the study); None for a run that is not one of this search's."""
        if run not in self.running:
            return None
        return self.storage.get_trial(self.running[run]).state.is_finished()

    def ended(self, run: Run, status: StatusRecord) -> None:
        """A trial run ended for good: when its process did not tell the study, record why."""
        from optuna.trial import TrialState

        trial_id = self.running.pop(run, None)
        if trial_id is None:
            return
        self.next_check = 0.0
        trial = self.storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            return
        if status.run_state == RunState.INTERRUPTED:
            self._interrupted(trial_id, trial.number, trial.params)
            return
        self.storage.set_trial_user_attr(trial_id, "failure", status.reason or status.state)
        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)


class Searches:
    """Every searched experiment of a grid, for the grid runner (`sft.runner.scheduler.Feeder`)."""

    def __init__(self, configs: dict[str, ExperimentConfig], results_path: Path, seeds: list[int], share: bool):
        self.searches = [
            Search(name, config, Path(results_path), list(seeds), share)
            for name, config in configs.items()
            if config.search is not None
        ]
        self.experiments = {search.name for search in self.searches}
        self.turn = 0

    def more(self, fits: Callable[[ExperimentConfig], int]) -> list[Planned]:
        """The next search in turn that has runs to hand over hands them (the runner asks again at once while
        slots are free), so several searches share the slots instead of the first taking them all."""
        for offset in range(len(self.searches)):
            index = (self.turn + offset) % len(self.searches)
            planned = self.searches[index].more(lambda config: min(1, fits(config)))
            if planned:
                self.turn = index + 1
                return planned
        return []

    def pending(self) -> bool:
        return any(not search.done for search in self.searches)

    def finished(self, run: Run) -> bool | None:
        for search in self.searches:
            found = search.finished(run)
            if found is not None:
                return found
        return None

    def ended(self, run: Run, status: StatusRecord) -> None:
        for search in self.searches:
            search.ended(run, status)


def chosen_config(name: str, config: ExperimentConfig, results_path: Path) -> tuple[ExperimentConfig | None, str]:
    """The config a searched experiment's runs use, from its search record without opening the study (for
    `--dry-run`): the config with the chosen values once its search (for this very config) has finished, else
    None and what the runs wait for."""
    path = search_folder(results_path, name) / SearchRecord.FILE
    try:
        record = SearchRecord.read(path)
    except FileNotFoundError:
        return None, f"after its search ({config.search.trials if config.search else 0} trials, not started)"
    except (OSError, ValueError) as error:
        return None, f"after its search ({path} unreadable: {error})"
    if record.config_hash != config.config_hash():
        return None, "after its search (the config changed since the last search: a new study)"
    if not record.finished:
        return None, f"after its search (in progress; {record.trials} trials asked)"
    if record.chosen is None:
        return None, "fails: its search finished without a completed trial"
    return with_values(config, record.chosen), ""


def searched(configs: dict[str, ExperimentConfig]) -> bool:
    """Whether any experiment of the grid declares a search."""
    return any(config.search is not None for config in configs.values())


__all__ = ["Planned", "Search", "Searches", "chosen_config", "searched", "storage", "trial_run"]
