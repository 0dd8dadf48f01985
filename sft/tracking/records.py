"""The tracker's run ids kept in the results folder, so that every run is logged exactly once.

    RESULTS/_tracking/grid.json            `GridTrackingRecord`   the parent run, and whether a tracked grid runs
    RESULTS/<experiment>/seed-<n>/tracking.json   `RunTrackingRecord`   the run's child run and what it holds

A child is reused only by the same tracker (URI and experiment) for the same config hash: a run whose process
was killed with its runner continues its child when the grid resumes, while a run that failed (or is tried
again by the same runner) gets a child of its own. A run folder set aside by `--force` takes its record with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from sft.results.records import Record
from sft.tracking.settings import TRACKING_FOLDER

# A child's states as the run record keeps them: `running` and `interrupted` are continued by a resumed grid,
# `failed` and `done` are final (a new attempt gets a new child).
RUNNING, INTERRUPTED, FAILED, DONE = "running", "interrupted", "failed", "done"
ChildState = Literal["running", "interrupted", "failed", "done"]


class GridTrackingRecord(Record):
    """`RESULTS/_tracking/grid.json`: the results folder's parent run in a tracker, and the tracked grid that
    runs now (`active`), whose experiment processes log their children under it."""

    FILE: ClassVar[str] = "grid.json"

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    tracker: str = Field(description="The tracker's name (mlflow).")
    tracking_uri: str = Field(description="The tracking URI every process logs through.")
    experiment_id: str = Field(description="The tracker's experiment that holds the parent and its children.")
    parent_run_id: str = Field(description="The parent run: one per results folder and tracker, continued on resume.")
    active: bool = Field(description="A tracked grid runs now: the runner's experiment processes log their children.")
    invocation: str = Field(
        description="The id of the runner invocation that runs (or last ran) the grid; a child it created is new "
        "to it, so a second attempt in one invocation (a retry) gets its own child."
    )
    varying: list[str] = Field(
        default_factory=list, description="The dotted setting keys that vary across the grid: logged by every child."
    )

    @classmethod
    def path(cls, results_path: str | Path) -> Path:
        return Path(results_path) / TRACKING_FOLDER / cls.FILE


class RunTrackingRecord(Record):
    """`RESULTS/<experiment>/seed-<n>/tracking.json`: the run's child run in the tracker and how far it got."""

    FILE: ClassVar[str] = "tracking.json"

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    tracking_uri: str = Field(description="The tracking URI the child was logged through.")
    experiment_id: str = Field(description="The tracker's experiment of the child.")
    run_id: str = Field(description="The child run's id.")
    parent_run_id: str | None = Field(description="The parent run it is nested under.")
    config_hash: str = Field(description="The config hash of the run it logs.")
    invocation: str | None = Field(description="The runner invocation whose experiment process created it.")
    state: ChildState = Field(description="running, interrupted (continued on resume), failed or done (final).")
    results_published: bool = Field(
        default=False, description="The final metrics, step metrics and result files are logged."
    )
    plots: list[str] = Field(default_factory=list, description="The report's plots logged to the child (file names).")

    def same_tracker(self, tracking_uri: str, experiment_id: str) -> bool:
        return self.tracking_uri == tracking_uri and self.experiment_id == experiment_id


def read_run_record(folder: Path) -> RunTrackingRecord | None:
    """The run folder's record, or None when it has none (or one this sft cannot read: a new child is made)."""
    try:
        return RunTrackingRecord.read(folder / RunTrackingRecord.FILE)
    except (OSError, ValueError):
        return None


def read_grid_record(results_path: str | Path) -> GridTrackingRecord | None:
    try:
        return GridTrackingRecord.read(GridTrackingRecord.path(results_path))
    except (OSError, ValueError):
        return None
