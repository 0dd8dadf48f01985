"""Reading a results folder: one row per finished run, the runs that failed or are still missing, and
every file that could not be read.

Only `RESULTS/<experiment>/seed-<n>/` folders are runs (`sft.results.layout.run_folders`); anything
deeper (older results a runner kept aside, adapters) and folders starting with `_` or `.` (the report's
own `_plots/`) are ignored. A run is *done* when its `results.json` reads (`ResultsRecord`, upgraded
from any older version); otherwise its `status.json` (`StatusRecord`) decides (`RunState`, the states
the runner writes): a failure, or anything else (running, interrupted, a state this version does not
know) meaning "not finished yet", listed as missing. A corrupt file never stops the report: it is named in
`problems` and the run is left out. A run folder's `tensorboard/` (the trainer's event files, when asked for)
and the W&B offline runs in its `wandb/` are listed for the report to link.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.config.grid import evaluate_file, raw_experiments
from sft.config.parsing import flatten
from sft.results.layout import TENSORBOARD_FOLDER, WANDB_FOLDER, Run, run_folders
from sft.results.logs import tail
from sft.results.records import RecordError
from sft.results.run_record import ResultsRecord
from sft.results.states import FAILED_STATES, RunState, StatusRecord


@dataclass
class Collected:
    """Everything one results folder holds, sorted by (experiment, seed)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tensorboard: list[str] = field(default_factory=list)  # `<experiment>/seed-<n>/tensorboard` holding event files
    wandb: list[str] = field(default_factory=list)  # `<experiment>/seed-<n>/wandb/offline-run-*`: W&B's offline runs


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def dataset_label(settings: dict[str, Any]) -> str:
    """What a reader calls the dataset: its path, plus the configuration name when there is one."""
    path = str(settings.get("dataset.path", "?"))
    name = settings.get("dataset.args.name")
    return f"{path} ({name})" if name else path


def result_row(results: ResultsRecord, folder: str) -> dict[str, Any]:
    """One row of the aggregated table from a run's results.json."""
    settings = flatten(results.config)
    training = results.training or {}
    timings = results.timings
    return {
        "experiment": results.experiment,
        "seed": results.seed,
        "status": RunState.DONE.value,
        "task_type": results.task_type,
        "dataset": dataset_label(settings),
        "model": settings.get("model.name"),
        "config_hash": results.config_hash,
        # shared training: a run that reused another's adapter spent no train_seconds, so summing
        # total_seconds counts each training once
        "training_key": results.training_key,
        "adapter_source": results.adapter_source,
        "finished_at": results.finished_at,
        "n_test": results.n_test,
        "test_hash": results.test_hash,  # None before it was recorded: the report hashes the predictions
        "n_shots": results.n_shots,
        "train_seconds": timings.train_seconds,
        # the adapter's cost (null in files written before they were recorded)
        "trainable_parameters": results.trainable_parameters,
        "adapter_bytes": results.adapter_bytes,
        "seconds_per_step": results.seconds_per_step,
        "inference_seconds": timings.inference_seconds,
        "total_seconds": timings.total_seconds,
        "folder": folder,
        "thresholds": results.thresholds,  # multilabel only
        "threshold_source": results.threshold_source,
        "labels": results.labels,
        "settings": settings,
        # model selection during training: best step, its validation metric, the learning curve (or None)
        "selection": training.get("selection") if isinstance(training.get("selection"), dict) else None,
        # training throughput (sft.training.batching); None in runs before it was recorded
        "tokens_per_second": training.get("tokens_per_second"),
        "padding_share": training.get("padding_share"),
        "batching": training.get("batching_used"),
        # per_class is flattened to per_class.<label>.f1 etc.; lists (confusion matrix) stay in results.json
        "metrics": {key: value for key, value in flatten(results.metrics).items() if is_number(value)},
    }


def read_row(root: Path, folder: str) -> dict[str, Any]:
    """The row of the run in `root / folder` (`<experiment>/seed-<n>`); raises OSError or ValueError
    (RecordError among them) for a results.json that cannot be read."""
    return result_row(ResultsRecord.read(root / folder / ResultsRecord.FILE, f"{folder}/{ResultsRecord.FILE}"), folder)


def log_tail(folder: Path, status: StatusRecord) -> str:
    """The end of the run's log: from status.json, else read from run.log."""
    if status.log_tail and status.log_tail.strip():
        return status.log_tail
    return tail(folder / "run.log")


def _unfinished(folder: Path, root: Path, collected: Collected) -> None:
    """File a run without a readable results.json under failures (a failed state) or missing (running,
    interrupted, or a state this version does not know)."""
    status_file = folder / StatusRecord.FILE
    run = Run.from_folder(folder)
    base = {"experiment": run.name, "seed": run.seed, "folder": run.relative}
    if not status_file.exists():
        collected.missing.append({**base, "state": "no result"})
        return
    source = f"{run.relative}/{StatusRecord.FILE}"
    try:
        status = StatusRecord.read(status_file, source)
    except (OSError, ValueError) as error:
        collected.problems.append(f"{source}: unreadable status file ({_describe(error, source)})")
        return
    state = status.state or "unknown"
    known = status.run_state
    if known == RunState.DONE:  # a status that outlived its results (moved aside or deleted)
        state = "done (no results.json)"
    record = {**base, "state": state}
    if known in FAILED_STATES:
        collected.failures.append(
            {
                **record,
                "exit_code": status.exit_code,
                "reason": status.reason or "",
                "duration_seconds": status.duration_seconds,
                "log": f"{run.relative}/run.log",
                "log_tail": log_tail(folder, status),
            }
        )
    else:
        collected.missing.append(record)


def _describe(error: Exception, source: str) -> str:
    """What went wrong with the file `source`, without naming it again (a RecordError names it per line)."""
    if isinstance(error, RecordError):
        return "; ".join(message.removeprefix(f"{source}: ") for message in error.messages)
    return f"{type(error).__name__}: {error}"


def collect(results_path: str | Path, expected: Iterable[tuple[str, int | None]] | None = None) -> Collected:
    """Read every run folder under `results_path`.

    `expected` lists the (experiment, seed) pairs of the grid (seed None: any seed); those with no
    run folder at all are added to `missing` as "not started".
    """
    root = Path(results_path)
    collected = Collected()
    boards: list[tuple[str, int, str]] = []
    offline: list[tuple[str, int, str]] = []
    for folder in run_folders(root):
        run = Run.from_folder(folder)
        relative = run.relative
        if has_events(root, folder / TENSORBOARD_FOLDER):
            boards.append((run.name, run.seed, f"{relative}/{TENSORBOARD_FOLDER}"))
        offline += [(run.name, run.seed, f"{relative}/{WANDB_FOLDER}/{name}") for name in offline_runs(root, folder)]
        if (folder / ResultsRecord.FILE).exists():
            try:
                collected.rows.append(read_row(root, relative))
            except (OSError, ValueError) as error:
                source = f"{relative}/{ResultsRecord.FILE}"
                collected.problems.append(f"{source}: unreadable result file ({_describe(error, source)})")
            continue
        _unfinished(folder, root, collected)
    seen = {(record["experiment"], record["seed"]) for record in _all_runs(collected)}
    seen_names = {name for name, _ in seen}
    for name, seed in expected or []:
        if (name, seed) not in seen and not (seed is None and name in seen_names):
            collected.missing.append({"experiment": name, "seed": seed, "folder": None, "state": "not started"})
    for records in (collected.rows, collected.failures, collected.missing):
        records.sort(key=lambda record: (record["experiment"], _seed_order(record["seed"])))
    collected.tensorboard = [path for _, _, path in sorted(boards)]
    collected.wandb = [path for _, _, path in sorted(offline)]
    return collected


def has_events(root: Path, folder: Path) -> bool:
    """The folder holds TensorBoard event files (in it or below: TensorBoard reads both) and lies inside the
    results folder (a link out of it would give the report a path that leaves the folder)."""
    if not folder.is_dir() or not folder.resolve().is_relative_to(root.resolve()):
        return False
    return any(path.is_file() for path in folder.rglob("events.out.tfevents.*"))


def offline_runs(root: Path, folder: Path) -> list[str]:
    """The names of the W&B offline runs in a run folder's `wandb/` (each `offline-run-<time>-<id>`, holding its
    `.wandb` log), inside the results folder; what `wandb sync` uploads."""
    runs = folder / WANDB_FOLDER
    if not runs.is_dir() or not runs.resolve().is_relative_to(root.resolve()):
        return []
    return sorted(path.name for path in runs.glob("offline-run-*") if any(path.glob("*.wandb")))


def _seed_order(seed: int | None) -> tuple[int, int]:
    """Numeric seeds in numeric order; None (not started) first."""
    return (0, 0) if seed is None else (1, seed)


def _all_runs(collected: Collected) -> list[dict[str, Any]]:
    return [*collected.rows, *collected.failures, *collected.missing]


def expected_runs(
    grid: str | Path, ext_vars: dict[str, str] | None, seeds: list[int] | None
) -> list[tuple[str, int | None]]:
    """(experiment, seed) pairs a grid file defines; seed None when the seeds are not given."""
    names = list(raw_experiments(evaluate_file(grid, ext_vars), str(grid)))
    given: list[int | None] = list(seeds) if seeds else [None]
    return [(name, seed) for name in names for seed in given]
