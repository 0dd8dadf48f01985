"""Reading a results folder: one row per finished run, the runs that failed or are still missing, and
every file that could not be read.

Only `RESULTS/<experiment>/seed-<n>/` folders are runs; anything deeper (older results a runner kept
aside, adapters) and folders starting with `_` or `.` (the report's own `_plots/`) are ignored. A run
is *done* when its `results.json` reads; otherwise its `status.json` decides (`RunState`, the states
the runner writes): a failure, or anything else (running, interrupted, a state this version does not
know) meaning "not finished yet", listed as missing. A corrupt file never stops the report: it is named in
`problems` and the run is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.results.files import read_json
from sft.results.logs import tail
from sft.results.states import FAILED_STATES, RunState


@dataclass
class Collected:
    """Everything one results folder holds, sorted by (experiment, seed)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}; lists and other leaves are kept as they are."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def dataset_label(settings: dict[str, Any]) -> str:
    """What a reader calls the dataset: its path, plus the configuration name when there is one."""
    path = str(settings.get("dataset.path", "?"))
    name = settings.get("dataset.args.name")
    return f"{path} ({name})" if name else path


def run_folders(results_path: Path) -> list[Path]:
    return sorted(
        folder
        for folder in results_path.glob("*/seed-*")
        if folder.is_dir() and not folder.parent.name.startswith(("_", "."))
    )


def _seed(folder: Path) -> int | str:
    seed = folder.name.removeprefix("seed-")
    return int(seed) if seed.lstrip("-").isdigit() else seed


def result_row(results: Any, folder: str) -> dict[str, Any]:
    """One row of the aggregated table from a results.json; raises on anything malformed."""
    if not isinstance(results, dict):
        raise TypeError("not a JSON object")
    for key in ("metrics", "config"):
        if not isinstance(results[key], dict):
            raise TypeError(f"'{key}' is not an object")
    settings = flatten(results["config"])
    timings = results.get("timings") or {}
    training = results.get("training") if isinstance(results.get("training"), dict) else {}
    return {
        "experiment": str(results["experiment"]),
        "seed": results["seed"],
        "status": RunState.DONE.value,
        "task_type": str(results["task_type"]),
        "dataset": dataset_label(settings),
        "model": settings.get("model.name"),
        "config_hash": results["config_hash"],
        # shared training: a run that reused another's adapter spent no train_seconds, so summing
        # total_seconds counts each training once
        "training_key": results.get("training_key"),
        "adapter_source": results.get("adapter_source"),
        "finished_at": results.get("finished_at"),
        "n_test": results.get("n_test"),
        "test_hash": results.get("test_hash"),  # None before it was recorded: the report hashes the predictions
        "n_shots": results.get("n_shots"),
        "train_seconds": timings.get("train_seconds"),
        "inference_seconds": timings.get("inference_seconds"),
        "total_seconds": timings.get("total_seconds"),
        "folder": folder,
        "thresholds": results.get("thresholds"),  # multilabel only
        "threshold_source": results.get("threshold_source"),
        "labels": results.get("labels"),
        "settings": settings,
        # model selection during training: best step, its validation metric, the learning curve (or None)
        "selection": training.get("selection") if isinstance(training.get("selection"), dict) else None,
        # per_class is flattened to per_class.<label>.f1 etc.; lists (confusion matrix) stay in results.json
        "metrics": {key: value for key, value in flatten(results["metrics"]).items() if is_number(value)},
    }


def log_tail(folder: Path, status: dict[str, Any]) -> str:
    """The end of the run's log: from status.json, else read from run.log."""
    if isinstance(status.get("log_tail"), str) and status["log_tail"].strip():
        return status["log_tail"]
    return tail(folder / "run.log")


def _unfinished(folder: Path, root: Path, collected: Collected) -> None:
    """File a run without a readable results.json under failures (a failed state) or missing (running,
    interrupted, or a state this version does not know)."""
    status_file = folder / "status.json"
    base = {"experiment": folder.parent.name, "seed": _seed(folder), "folder": folder.relative_to(root).as_posix()}
    if not status_file.exists():
        collected.missing.append({**base, "state": "no result"})
        return
    try:
        status = read_json(status_file)
        if not isinstance(status, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        collected.problems.append(f"{status_file.relative_to(root)}: unreadable status file ({_describe(error)})")
        return
    state = str(status.get("state") or "unknown")
    known = RunState.parse(state)
    if known == RunState.DONE:  # a status that outlived its results (moved aside or deleted)
        state = "done (no results.json)"
    record = {**base, "state": state}
    if known in FAILED_STATES:
        tail = log_tail(folder, status)
        collected.failures.append(
            {
                **record,
                "exit_code": status.get("exit_code"),
                "reason": status.get("reason") or "",
                "duration_seconds": status.get("duration_seconds"),
                "log": (folder / "run.log").relative_to(root).as_posix(),
                "log_tail": tail,
            }
        )
    else:
        collected.missing.append(record)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def collect(results_path: str | Path, expected: Iterable[tuple[str, int | None]] | None = None) -> Collected:
    """Read every run folder under `results_path`.

    `expected` lists the (experiment, seed) pairs of the grid (seed None: any seed); those with no
    run folder at all are added to `missing` as "not started".
    """
    root = Path(results_path)
    collected = Collected()
    for folder in run_folders(root):
        results_file = folder / "results.json"
        relative = folder.relative_to(root).as_posix()
        if results_file.exists():
            try:
                collected.rows.append(result_row(read_json(results_file), relative))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                collected.problems.append(f"{relative}/results.json: unreadable result file ({_describe(error)})")
            continue
        _unfinished(folder, root, collected)
    seen = {(record["experiment"], record["seed"]) for record in _all_runs(collected)}
    seen_names = {name for name, _ in seen}
    for name, seed in expected or []:
        if (name, seed) not in seen and not (seed is None and name in seen_names):
            collected.missing.append({"experiment": name, "seed": seed, "folder": None, "state": "not started"})
    for records in (collected.rows, collected.failures, collected.missing):
        records.sort(key=lambda record: (record["experiment"], _seed_order(record["seed"])))
    return collected


def _seed_order(seed: Any) -> tuple:
    """Numeric seeds in numeric order; None (not started) first, odd folder names last."""
    if seed is None:
        return (0, 0, "")
    return (1, seed, "") if is_number(seed) else (2, 0, str(seed))


def _all_runs(collected: Collected) -> list[dict[str, Any]]:
    return [*collected.rows, *collected.failures, *collected.missing]


def expected_runs(grid: str | Path, ext_vars: dict[str, str] | None, seeds: list[int] | None) -> list[tuple]:
    """(experiment, seed) pairs a grid file defines; seed None when the seeds are not given."""
    from sft.config.grid import evaluate_file, raw_experiments

    names = list(raw_experiments(evaluate_file(grid, ext_vars), str(grid)))
    return [(name, seed) for name in names for seed in (seeds or [None])]
