"""The study of one searched experiment: its database in the results folder, its sampler and pruner, and
the two records the search leaves beside it.

`RESULTS/_search/<experiment>/` holds the study database, `search.json` (`SearchRecord`: which study
belongs to the experiment's current config, its state and chosen values) and one run folder per trial,
`<experiment>.trial-<number>/seed-<n>/`, with the trial's marker `trial.json` (`TrialRecord`), config, log and status.
The report does not list these folders as runs (names under `_` hold none).

Storage: Optuna's RDB storage on SQLite (`study.db`) by default: a real transactional database that every
process (the runner and each trial's own process) opens and that any SQLite tool reads. SQLite relies on
POSIX file locks, which NFS and other cluster file systems do not always honour; for Slurm grids on such a
file system `search.storage: journal` keeps the study in Optuna's JournalStorage (`study.journal`), an
append-only log whose writers take a lock made of an atomic link, which those file systems support.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from sft.config import ExperimentConfig
from sft.config.schema import SearchConfig
from sft.evaluation.metrics import higher_is_better
from sft.results.records import Record
from sft.search.space import grid_points
from sft.tasks import task_for
from sft.tasks.base import VALIDATION_LOSS, selection_metric

SEARCH_FOLDER = "_search"
STORAGE_FILES = {"sqlite": "study.db", "journal": "study.journal"}
# SQLite waits this long for another process's write lock before it fails (trials write their reports).
SQLITE_TIMEOUT_SECONDS = 120
# A user attribute of trials the search marked failed because their runner stopped: retried, not counted.
INTERRUPTED_ATTR = "interrupted"


def search_folder(results_path: str | Path, experiment: str) -> Path:
    """Where the study and the trials of `experiment` live."""
    return Path(results_path) / SEARCH_FOLDER / experiment


def study_name(config: ExperimentConfig) -> str:
    """One study per searched config: a changed experiment or search starts a new study in the same file."""
    return f"search-{config.config_hash()[:16]}"


def direction(config: ExperimentConfig) -> tuple[str, Literal["maximize", "minimize"]]:
    """The validation metric trials are compared on (the one that picks the best adapter) and its direction."""
    metric = selection_metric(config, task_for(config))
    higher = False if metric == VALIDATION_LOSS else higher_is_better(metric)
    return metric, "maximize" if higher else "minimize"


def storage(folder: Path, kind: str) -> Any:
    """The Optuna storage of a search folder (created on first use)."""
    import optuna

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STORAGE_FILES[kind]
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

        backend = JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path)))
        return optuna.storages.JournalStorage(backend)
    return optuna.storages.RDBStorage(
        f"sqlite:///{path.resolve()}", engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
    )


def sampler(search: SearchConfig) -> Any:
    """The seeded Optuna sampler the search asks."""
    import optuna

    if search.sampler == "grid":
        return optuna.samplers.GridSampler(grid_points(search), seed=search.seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    startup = search.startup_trials if search.startup_trials is not None else min(10, max(1, search.trials // 3))
    return optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=startup, constant_liar=True)


def pruner(search: SearchConfig) -> Any:
    """The Optuna pruner: the same object in the runner and in every trial's process (should_prune runs there)."""
    import optuna

    if search.pruner == "asha":
        minimum: Any = search.min_resource if search.min_resource is not None else "auto"
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=minimum, reduction_factor=search.reduction_factor)
    if search.pruner == "median":
        startup = search.startup_trials if search.startup_trials is not None else min(5, max(1, search.trials // 3))
        return optuna.pruners.MedianPruner(n_startup_trials=startup)
    return optuna.pruners.NopPruner()


def open_study(
    folder: Path,
    search: SearchConfig,
    name: str,
    goal: Literal["maximize", "minimize"] | None = None,
    samples: bool = True,
) -> Any:
    """The study `name` of a search folder; created when `goal` ('maximize'/'minimize') is given. A trial's
    process (`samples=False`) only reports and tells: it gets a sampler that keeps no state, as the grid
    sampler's bookkeeping after a trial (it stops the study once the grid is covered) belongs to the runner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = storage(folder, search.storage)
    chosen = sampler(search) if samples else optuna.samplers.RandomSampler()
    if goal is not None:
        return optuna.create_study(
            storage=where, study_name=name, direction=goal, sampler=chosen, pruner=pruner(search),
            load_if_exists=True,
        )  # fmt: skip
    return optuna.load_study(storage=where, study_name=name, sampler=chosen, pruner=pruner(search))


class TrialRecord(Record):
    """`RESULTS/_search/<experiment>/<experiment>.trial-<n>/seed-<s>/trial.json`: written by the runner before a
    trial starts; its presence makes `run-experiment` in that folder a trial (validation only, reported to the
    pruner)."""

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    FILE: ClassVar[str] = "trial.json"

    experiment: str = Field(description="The searched experiment.")
    study: str = Field(description="The study's name in the search folder's database.")
    storage: Literal["sqlite", "journal"] = Field(description="Which database file holds the study.")
    trial_id: int = Field(description="Optuna's id of the trial in the storage.")
    number: int = Field(description="The trial's number in its study (0, 1, ...).")
    params: dict[str, Any] = Field(description="The sampled values, by dotted config key.")
    metric: str = Field(description="The validation metric reported to the pruner.")


class SearchRecord(Record):
    """`RESULTS/_search/<experiment>/search.json`: which study belongs to the experiment's current config,
    and, once every trial finished, the values chosen on validation (what the experiment's runs use)."""

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    FILE: ClassVar[str] = "search.json"

    experiment: str = Field(description="The searched experiment.")
    config_hash: str = Field(description="The hash of the searched config (with its search section).")
    study: str = Field(description="The study's name in the database.")
    storage: Literal["sqlite", "journal"] = Field(description="Which database file holds the study.")
    metric: str = Field(description="The validation metric trials are compared on.")
    direction: Literal["maximize", "minimize"] = Field(description="Whether a higher metric is better.")
    trials: int = Field(description="Trials asked for (search.trials).")
    sampler: str = Field(description="search.sampler.")
    pruner: str = Field(description="search.pruner.")
    finished: bool = Field(False, description="Whether every asked trial has finished.")
    best_trial: int | None = Field(None, description="The number of the best completed trial.")
    best_value: float | None = Field(None, description="Its validation value.")
    chosen: dict[str, Any] | None = Field(None, description="Its values, by dotted config key.")
