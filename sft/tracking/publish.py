"""The grid's side of tracking: the parent run of a results folder, and publishing what its run folders hold.

`start_grid` opens the parent (continuing the one the results folder records, so a resumed grid stays one
parent) in a background thread while the runner starts its executor, then marks the grid record active so
the experiment processes log their children under it. `publish_folder` makes the tracker agree with the
result files: a finished run without a published child gets one (a grid that ran untracked, a tracker that
was down), a child left running by a run that failed is ended with the reason, the report's plots go to the
children of their experiment. The grid's end and `aggregate --track` both call it, then log the report on
the parent.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from sft.config import ExperimentConfig
from sft.results.layout import Run, run_folders
from sft.results.run_record import ResultsRecord
from sft.results.states import RunState, StatusRecord
from sft.tracking.children import open_child, publish_results, record_failure
from sft.tracking.client import Tracker, create_run, end, experiment_id, log_batch, log_files, reopen
from sft.tracking.params import varying_keys
from sft.tracking.records import (
    RUNNING,
    GridTrackingRecord,
    RunTrackingRecord,
    read_grid_record,
    read_run_record,
)
from sft.tracking.settings import TrackingOptions
from sft.tracking.store import prepare_store

log = logging.getLogger(__name__)
PLOTS_ARTIFACTS = "plots"  # the artifact folder of the report's plots, on the parent and on each child
REPORT_ARTIFACTS = "report"  # the artifact folder of the aggregated report on the parent


@dataclass
class GridTracking:
    """A results folder's parent run in a tracker, opened."""

    results_path: Path
    tracker: Tracker
    record: GridTrackingRecord

    def publish(self, report_files: Iterable[Path] = (), plots: Iterable[str] = ()) -> None:
        """Publish the run folders, then the report and its plots on the parent."""
        plots = list(plots)
        publish_folder(self.results_path, self.tracker, self.record, plots)
        files = [(Path(path), REPORT_ARTIFACTS) for path in report_files]
        files += [(self.results_path / plot, _plot_folder(plot)) for plot in plots]
        self.tracker.call("log the report", log_files, self.record.parent_run_id, files)

    def close(self, status: str = "FINISHED") -> None:
        """End the parent (FINISHED, FAILED or KILLED) and mark the grid no longer running."""
        self.tracker.call("end the parent run", end, self.record.parent_run_id, status)
        if self.record.active:
            self.record = self.record.model_copy(update={"active": False})
            self.record.write(GridTrackingRecord.path(self.results_path))


def _plot_folder(plot: str) -> str:
    """The parent's artifact folder of a report plot: `plots/`, and its experiment's folder when it has one."""
    inner = Path(*Path(plot).parts[1:-1])
    return f"{PLOTS_ARTIFACTS}/{inner.as_posix()}" if inner.parts else PLOTS_ARTIFACTS


def open_grid(
    results_path: Path,
    options: TrackingOptions,
    configs: dict[str, ExperimentConfig] | None = None,
    active: bool | None = None,
) -> GridTracking | None:
    """Open the results folder's parent run (the recorded one when this tracker holds it, else a new one) and
    write the grid record: `active` for a grid that starts now (a new invocation), None to leave a running
    grid's state as it is (`aggregate --track`). None when the tracker fails (it warned)."""
    uri = options.resolved_uri(results_path)
    prepare_store(uri)  # a new SQLite store: a copy of an empty one, not every schema migration again
    tracker = Tracker(uri)
    GridTrackingRecord.path(results_path).parent.mkdir(parents=True, exist_ok=True)
    name = options.experiment_name(results_path)
    experiment = tracker.call("open the experiment", experiment_id, name, options.artifact_location(results_path))
    if experiment is None:
        return None
    old = read_grid_record(results_path)
    parent = None
    if old is not None and old.tracking_uri == uri and old.experiment_id == experiment:
        parent = old.parent_run_id if tracker.call("reopen the parent", reopen, old.parent_run_id) else None
    if parent is None and tracker.ok:
        tags = {"sft.results_path": str(Path(results_path).resolve()), "sft.role": "grid"}
        parent = tracker.call("create the parent run", create_run, experiment, Path(results_path).resolve().name, tags)
    if parent is None:
        return None
    if configs is None and not (old is not None and old.varying):
        configs = _folder_configs(Path(results_path))  # a folder published after the fact: its finished runs
    varying = varying_keys(configs.values()) if configs else (old.varying if old else [])
    if configs:
        tags = {"sft.experiments": str(len({config.config_hash() for config in configs.values()})),
                "sft.varying": ", ".join(varying)[:5000]}  # fmt: skip
        tracker.call("tag the parent run", log_batch, parent, None, None, None, tags)
    same = old is not None and old.parent_run_id == parent
    running = active if active is not None else bool(same and old is not None and old.active)
    invocation = old.invocation if active is None and same and old is not None else uuid.uuid4().hex
    record = GridTrackingRecord(
        tracker=options.tracker, tracking_uri=uri, experiment_id=experiment, parent_run_id=parent, active=running,
        invocation=invocation, varying=varying,
    )  # fmt: skip
    record.write(GridTrackingRecord.path(results_path))
    return GridTracking(Path(results_path), tracker, record)


def deactivate(results_path: Path) -> None:
    """An untracked grid starts: a grid record left active (by a tracked runner that was killed) is turned off,
    so this grid's experiments do not log under it."""
    old = read_grid_record(results_path)
    if old is not None and old.active:
        old.model_copy(update={"active": False}).write(GridTrackingRecord.path(results_path))


class GridStart:
    """`open_grid` for a grid that starts now, in a background thread: the tracker's import and its store's
    creation overlap the executor's start. A grid record left active by a runner that was killed is turned
    off first, so no experiment logs under it meanwhile."""

    def __init__(self, results_path: Path, options: TrackingOptions, configs: dict[str, ExperimentConfig]):
        deactivate(results_path)
        self.grid: GridTracking | None = None
        self.thread = threading.Thread(
            target=self._open, args=(results_path, options, configs), name="sft-tracking", daemon=True
        )
        self.thread.start()

    def _open(self, results_path: Path, options: TrackingOptions, configs: dict[str, ExperimentConfig]) -> None:
        began = time.time()
        try:
            grid = open_grid(results_path, options, configs, active=True)
        except Exception:  # never the grid's failure: its runs go on untracked, `aggregate --track` publishes them
            log.warning("Tracking the grid failed; it runs untracked", exc_info=True)
            return
        if grid is not None:
            reconcile(grid)  # children left running by failed runs end before this grid reopens them
            log.info("Tracking the grid as run %s at %s (%.1f s)", grid.record.parent_run_id, grid.tracker.uri,
                     time.time() - began)  # fmt: skip
        self.grid = grid

    def opened(self) -> GridTracking | None:
        self.thread.join()
        return self.grid


def reconcile(grid: GridTracking) -> None:
    """End the children whose run ended without results while nobody could say so (a runner killed after a
    run failed): what a resumed grid reopens must be runs that were cut short, not runs that failed."""
    for folder in run_folders(grid.results_path):
        record = read_run_record(folder)
        if record is None or record.state != RUNNING or not _ours(record, grid.record):
            continue
        status = _status(folder)
        if status is not None and status.run_state in (RunState.FAILED, RunState.INTERRUPTED):
            interrupted = status.run_state == RunState.INTERRUPTED
            record_failure(grid.tracker, record, folder, status.reason or status.state, interrupted)


def _ours(record: RunTrackingRecord, grid: GridTrackingRecord) -> bool:
    return record.same_tracker(grid.tracking_uri, grid.experiment_id)


def _status(folder: Path) -> StatusRecord | None:
    try:
        return StatusRecord.read(folder / StatusRecord.FILE)
    except (OSError, ValueError):
        return None


def _folder_configs(results_path: Path) -> dict[str, ExperimentConfig]:
    """The configs of the folder's finished runs, by run folder."""
    found = {}
    for folder in run_folders(results_path):
        try:
            config = _config(ResultsRecord.read(folder / ResultsRecord.FILE).config, folder)
        except (OSError, ValueError):
            continue
        if config is not None:
            found[folder.as_posix()] = config
    return found


def _config(data: dict | None, folder: Path) -> ExperimentConfig | None:
    if data is None:
        try:
            return ExperimentConfig.model_validate_json((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError:
        return None


def publish_folder(results_path: Path, tracker: Tracker, grid: GridTrackingRecord, plots: list[str]) -> None:
    """Make the tracker hold every run folder's outcome once (see the module's docstring)."""
    by_experiment: dict[str, list[str]] = {}
    for plot in plots:
        by_experiment.setdefault(Path(plot).parent.name, []).append(plot)
    for folder in run_folders(results_path):
        if not tracker.ok:
            return
        run = Run.from_folder(folder)
        publish_run(tracker, grid, run, [Path(results_path) / plot for plot in by_experiment.get(run.name, [])])


def publish_run(tracker: Tracker, grid: GridTrackingRecord, run: Run, plots: list[Path]) -> None:
    folder = run.folder
    try:
        results: ResultsRecord | None = ResultsRecord.read(folder / ResultsRecord.FILE)
    except (OSError, ValueError):
        results = None
    record = read_run_record(folder)
    own = record if record is not None and _ours(record, grid) else None
    if results is not None:
        if own is not None and own.config_hash != results.config_hash:
            own = None
        if own is None or not own.results_published:
            fresh = own is None
            if own is None:
                config = _config(results.config, folder)
                own = open_child(tracker, grid, config, run) if config is not None else None
            if own is None:
                return
            own = publish_results(tracker, own, folder, results, check_logged=not fresh)
        new = [plot for plot in plots if plot.name not in own.plots]
        if new and own.results_published:
            tracker.call("log the plots", log_files, own.run_id, [(plot, PLOTS_ARTIFACTS) for plot in new])
            if tracker.ok:
                own = own.model_copy(update={"plots": [*own.plots, *(plot.name for plot in new)]})
                own.write(folder / RunTrackingRecord.FILE)
        return
    status = _status(folder)
    if status is None or status.run_state not in (RunState.FAILED, RunState.INTERRUPTED):
        return  # running elsewhere, or never started
    interrupted = status.run_state == RunState.INTERRUPTED
    reason = status.reason or status.state
    if own is not None and own.state == RUNNING:
        record_failure(tracker, own, folder, reason, interrupted)
    elif own is None and not interrupted:  # a failure the tracker never saw (e.g. its training failed first)
        config = _config(None, folder)
        opened = open_child(tracker, grid, config, run) if config is not None else None
        if opened is not None:
            record_failure(tracker, opened, folder, reason)
