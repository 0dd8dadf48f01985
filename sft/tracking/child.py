"""The experiment process's hook: `tracked(config, run)` around a run opens its child run when a tracked grid
started the process, and logs how the run ended.

Where the client still has to be imported (a process the fork server did not start), or the tracker is a
server that may be slow to answer, the child opens in a background thread while the experiment prepares its
data and loads its model, so the import and the first requests cost the experiment nothing. With the client
imported ahead and a local SQLite store, it opens at once instead: the open is a few statements, and a thread
that runs them beside the experiment hands the interpreter lock back and forth with the experiment's main
thread on every statement, which costs the experiment more than the open itself. The end is logged once
results.json is written. Only processes the grid runner started track (a lone `run-experiment` never does),
and only while the results folder's grid record says a tracked grid runs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sft.config import ExperimentConfig
from sft.results.layout import Run
from sft.results.logs import RUNNER_LOG_ENV
from sft.results.run_record import ResultsRecord
from sft.tracking.children import open_child, publish_results, record_failure
from sft.tracking.client import Tracker, preloaded
from sft.tracking.records import GridTrackingRecord, RunTrackingRecord, read_grid_record
from sft.tracking.store import sqlite_file
from sft.tracking.wandb_run import wandb_ended

log = logging.getLogger(__name__)
OPEN_SECONDS = 60.0  # the longest the end of a run waits for its child to open (each request times out sooner)


class ChildRun:
    """A run's child, opening in the background."""

    def __init__(self, grid: GridTrackingRecord, config: ExperimentConfig, run: Run):
        self.grid, self.config, self.run = grid, config, run
        self.tracker = Tracker(grid.tracking_uri)
        self.record: RunTrackingRecord | None = None
        self.thread: threading.Thread | None = None
        if in_background(grid.tracking_uri):
            self.thread = threading.Thread(target=self._open, name="sft-tracking", daemon=True)
            self.thread.start()
        else:
            self._open()

    def _open(self) -> None:
        _safely(self._open_child)

    def _open_child(self) -> None:
        self.record = open_child(self.tracker, self.grid, self.config, self.run)

    def _opened(self) -> RunTrackingRecord | None:
        if self.thread is None:
            return self.record
        self.thread.join(OPEN_SECONDS)
        return None if self.thread.is_alive() else self.record

    def finish(self) -> None:
        record = self._opened()
        if record is None:
            return
        try:
            results = ResultsRecord.read(self.run.folder / ResultsRecord.FILE)
        except (OSError, ValueError) as error:  # a train-only process, or an unreadable file: nothing to publish
            log.warning("Tracking: no results to publish (%s)", error)
            return
        publish_results(self.tracker, record, self.run.folder, results)

    def fail(self, reason: str, interrupted: bool = False) -> None:
        record = self._opened()
        if record is not None:
            record_failure(self.tracker, record, self.run.folder, reason, interrupted)


def in_background(uri: str) -> bool:
    """Open the child in a background thread: unless the client is imported already (the fork server preloads
    it) and the store is a local SQLite file, whose statements take milliseconds."""
    return sqlite_file(uri) is None or not preloaded(uri)


def start_child(config: ExperimentConfig, run: Run) -> ChildRun | None:
    """The run's child when the grid runner started this process for a tracked grid; else None."""
    if not os.environ.get(RUNNER_LOG_ENV):
        return None
    grid = read_grid_record(run.results_path)
    return ChildRun(grid, config, run) if grid is not None and grid.active else None


@contextmanager
def tracked(config: ExperimentConfig, run: Run, enabled: bool = True) -> Iterator[None]:
    """Log the run as a child of the tracked grid that started it (nothing otherwise, or when not `enabled`:
    the other ranks of a data-parallel run), and end the W&B run its trainer opened, if any
    (`sft.tracking.wandb_run`)."""
    child = start_child(config, run) if enabled else None
    with wandb_ended(config, run):
        if child is None:
            yield
            return
        try:
            yield
        except KeyboardInterrupt:
            _safely(child.fail, "interrupted", True)
            raise
        except BaseException as error:
            _safely(child.fail, f"{type(error).__name__}: {error}")
            raise
        _safely(child.finish)


def _safely(step: Callable[..., None], *args: Any) -> None:
    """A step of tracking that must not change how the run ends, whatever goes wrong in it."""
    try:
        step(*args)
    except Exception:
        log.warning("Tracking failed; the results folder keeps everything", exc_info=True)
