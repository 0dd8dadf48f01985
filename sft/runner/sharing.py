"""Shared trainings in a grid: which runs need which trained adapter (training key and seed), which of
them trains it, which wait for it, and what a failed training does to the others.

Why no separate training jobs: the run that trains is an ordinary experiment, which trains under the
key's lock and publishes the adapter before it evaluates (`sft.experiment.shared_adapter`), so timeouts, retries,
status files, run locks, resume and every executor work unchanged. The runner only orders the runs:

- a run whose adapter is not ready does not start while another run of the same key and seed is
  active (it could only wait on the key's lock, holding a slot); it starts, in any free slot, once the
  adapter is published, and reuses it. Runs of other keys start meanwhile.
- when the run that was training ends without publishing (failed, after its retries), the runs still
  waiting for that key and seed fail without starting, with the reason, and the grid goes on.
- two runners (or a run started by hand) on one results folder meet at the key's lock in the children:
  one trains, the other waits and reuses.

`--no-share-training` makes every run train its own adapter, as independent runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sft.config import ExperimentConfig
from sft.results.adapters import SharedAdapter, shared_adapter
from sft.results.layout import Run


class Trainings:
    """The shared adapters of one grid's runs, and the trainings that failed."""

    def __init__(self, configs: dict[str, ExperimentConfig], runs: Iterable[Run]):
        self.adapters = {run: shared_adapter(configs[run.name], run) for run in runs}
        self.failed: dict[SharedAdapter, str] = {}

    def waits(self, run: Run, active: Iterable[Run]) -> bool:
        """True while another active run of the same key and seed may be training `run`'s adapter."""
        shared = self.adapters.get(run)
        if shared is None or not any(self.adapters.get(other) == shared for other in active):
            return False
        return not shared.ready()

    def failure(self, run: Run) -> str | None:
        """Why `run` cannot start: the training it needs failed (and left no adapter)."""
        shared = self.adapters.get(run)
        if shared is None or shared not in self.failed or shared.ready():
            return None
        return self.failed[shared]

    def ended(self, run: Run, reason: str) -> None:
        """`run` failed for good; if its adapter is not ready, the runs waiting for it fail too."""
        shared = self.adapters.get(run)
        if shared is not None and not shared.ready():
            self.failed[shared] = (
                f"its training (key {shared.key[:12]}, seed {run.seed}) failed in {run.name} seed {run.seed}: {reason}"
            )


@dataclass(frozen=True)
class PlannedTraining:
    """One training of the `--dry-run` plan."""

    adapter: SharedAdapter
    action: str  # "train" or "reuse"
    by: str | None  # the experiment that trains it
    users: list[str]  # experiments that would run with it


def training_plan(
    configs: dict[str, ExperimentConfig], rows: list[tuple[Run, str, str]]
) -> tuple[list[PlannedTraining], dict[Run, str]]:
    """The trainings the runs that would run need (train, or reuse the stored adapter), and for each run
    what it does about its adapter: 'trains <key>' or 'reuses <key>'."""
    users: dict[SharedAdapter, list[Run]] = {}
    for run, action, _ in rows:
        shared = shared_adapter(configs[run.name], run) if action == "run" else None
        if shared is not None:
            users.setdefault(shared, []).append(run)
    trainings, roles = [], {}
    for shared, runs in users.items():
        ready = shared.ready()
        trainer = None if ready else runs[0]
        trainings.append(
            PlannedTraining(
                shared, "reuse" if ready else "train", trainer.name if trainer else None, [run.name for run in runs]
            )
        )
        for run in runs:
            roles[run] = f"{'trains' if run == trainer else 'reuses'} {shared.key[:12]}"
    return trainings, roles
