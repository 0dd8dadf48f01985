"""A run's child in the tracker: opened (or reopened) when its experiment starts, its results published when it
finishes, its failure recorded when it fails; each step recorded in the run folder's `RunTrackingRecord`, so
that neither a resumed grid nor a later `aggregate --track` logs anything twice. Used by the experiment's
process (`sft.tracking.child`) and by the grid's side (`sft.tracking.publish`)."""

from __future__ import annotations

from pathlib import Path

from sft.config import ExperimentConfig
from sft.results.layout import TENSORBOARD_FOLDER, Run
from sft.results.run_record import REUSED, ResultsRecord
from sft.tracking.client import Tracker, create_run, end, log_batch, log_files, logged_metrics, reopen
from sft.tracking.params import final_metrics, setting_params, step_metrics
from sft.tracking.records import DONE, FAILED, INTERRUPTED, RUNNING, GridTrackingRecord, RunTrackingRecord

# Files of a run folder logged as the child's artifacts (a missing one is skipped), with its TensorBoard events.
RESULT_FILES = ("results.json", "predictions.jsonl", "config.json")
MAX_TAG = 5000


def run_tags(config: ExperimentConfig, run: Run, state: str) -> dict[str, str]:
    tags = {
        "sft.experiment": run.name, "sft.seed": str(run.seed), "sft.run_folder": run.relative,
        "sft.config_hash": config.config_hash(), "sft.state": state,
    }  # fmt: skip
    key = config.training_key()
    return tags | ({"sft.training_key": key} if key else {})


def open_child(
    tracker: Tracker, grid: GridTrackingRecord, config: ExperimentConfig, run: Run, state: str = RUNNING
) -> RunTrackingRecord | None:
    """The run's child, recorded in its folder: the one it has when its last process was cut short by an
    earlier invocation (a resumed grid continues it), else a new one nested under the grid's parent (a first
    attempt, a retry, a run whose child failed or belongs to another tracker). None when the tracker fails."""
    folder, config_hash = run.folder, config.config_hash()
    old = _record(folder)
    if (
        old is not None
        and old.same_tracker(grid.tracking_uri, grid.experiment_id)
        and old.config_hash == config_hash
        and old.state in (RUNNING, INTERRUPTED)
        and old.invocation != grid.invocation
        and tracker.call("reopen the run", reopen, old.run_id) is not None
    ):
        record = old.model_copy(update={"state": RUNNING, "invocation": grid.invocation})
    else:
        if not tracker.ok:
            return None
        tags = run_tags(config, run, state)
        run_id = tracker.call("create the run", create_run, grid.experiment_id, run.relative, tags, grid.parent_run_id)
        if run_id is None:
            return None
        record = RunTrackingRecord(
            tracking_uri=grid.tracking_uri, experiment_id=grid.experiment_id, run_id=run_id,
            parent_run_id=grid.parent_run_id, config_hash=config_hash, invocation=grid.invocation, state=RUNNING,
        )  # fmt: skip
    record.write(folder / RunTrackingRecord.FILE)  # before anything else: a kill now still finds the child
    tracker.call("log the settings", log_batch, record.run_id, setting_params(config, grid.varying))
    return record


def _record(folder: Path) -> RunTrackingRecord | None:
    try:
        return RunTrackingRecord.read(folder / RunTrackingRecord.FILE)
    except (OSError, ValueError):
        return None


def publish_results(
    tracker: Tracker, record: RunTrackingRecord, folder: Path, results: ResultsRecord, check_logged: bool = False
) -> RunTrackingRecord:
    """Log a finished run's metrics, step metrics, result files and state, and end its child; the updated record
    (written) once the tracker took all of it. `check_logged`: the child may hold some metrics already (a
    publish cut short), which are not logged again."""
    metrics, steps = final_metrics(results), step_metrics(results)
    if check_logged:
        have = tracker.call("read the run", logged_metrics, record.run_id) or set()
        metrics = {key: value for key, value in metrics.items() if key not in have}
        steps = [step for step in steps if step[0] not in have]
    tags = {
        "sft.state": DONE,
        "sft.adapter_source": results.adapter_source or "none",
        "sft.reused_training": str(results.adapter_source == REUSED).lower(),
    }
    tracker.call("log the results", log_batch, record.run_id, None, metrics, steps, tags)
    files: list[tuple[Path, str | None]] = [(folder / name, None) for name in RESULT_FILES]
    files.append((folder / TENSORBOARD_FOLDER, TENSORBOARD_FOLDER))
    tracker.call("log the result files", log_files, record.run_id, files)
    tracker.call("end the run", end, record.run_id, "FINISHED")
    if not tracker.ok:
        return record
    done = record.model_copy(update={"state": DONE, "results_published": True})
    done.write(folder / RunTrackingRecord.FILE)
    return done


def record_failure(
    tracker: Tracker, record: RunTrackingRecord, folder: Path, reason: str, interrupted: bool = False
) -> RunTrackingRecord:
    """End the child as FAILED (or KILLED, for an interrupted run a resumed grid continues) with the reason."""
    state = INTERRUPTED if interrupted else FAILED
    tags = {"sft.state": state, "sft.failure_reason": reason[:MAX_TAG]}
    tracker.call("log the failure", log_batch, record.run_id, None, None, None, tags)
    tracker.call("end the run", end, record.run_id, "KILLED" if interrupted else "FAILED")
    if not tracker.ok:
        return record
    ended = record.model_copy(update={"state": state})
    ended.write(folder / RunTrackingRecord.FILE)
    return ended
