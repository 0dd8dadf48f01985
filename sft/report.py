"""Aggregating result files into `aggregated_results.json` and `aggregated_results.md`.

The JSON keeps every row (one per experiment and seed) with every setting and scalar metric; the
Markdown shows, per task type, only the settings that vary across the grid and the main metrics.
A corrupt or unreadable result file is named in the report and skipped, never fatal.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sft.metrics import MAIN_METRICS
from sft.storage import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

JSON_NAME = "aggregated_results.json"
MARKDOWN_NAME = "aggregated_results.md"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}; lists and other leaves are kept as they are."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def _row(results: dict[str, Any]) -> dict[str, Any]:
    metrics = {k: v for k, v in results["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {
        "experiment": results["experiment"],
        "seed": results["seed"],
        "status": "done",
        "task_type": results["task_type"],
        "config_hash": results["config_hash"],
        "total_seconds": results.get("timings", {}).get("total_seconds"),
        "settings": flatten(results["config"]),
        "metrics": metrics,
    }


def collect(results_path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(finished rows, failed runs, problems) from `results_path/<experiment>/seed-<n>/`."""
    rows, failures, problems = [], [], []
    for folder in sorted(Path(results_path).glob("*/seed-*")):
        results_file, status_file = folder / "results.json", folder / "status.json"
        if results_file.exists():
            try:
                rows.append(_row(read_json(results_file)))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                problems.append(f"{results_file}: unreadable result file ({type(error).__name__}: {error})")
            continue
        if status_file.exists():
            try:
                status = read_json(status_file)
                if not isinstance(status, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as error:
                problems.append(f"{status_file}: unreadable status file ({type(error).__name__}: {error})")
                continue
            if status.get("state") == "failed":
                # the folder names say which run it was, whatever the file lacks
                status.setdefault("experiment", folder.parent.name)
                seed = folder.name.removeprefix("seed-")
                status.setdefault("seed", int(seed) if seed.lstrip("-").isdigit() else seed)
                failures.append(status)
    rows.sort(key=lambda row: (row["experiment"], row["seed"]))
    return rows, failures, problems


def varying_settings(rows: list[dict[str, Any]]) -> list[str]:
    """Setting keys whose values differ between the rows that set them, in config order.

    A section only some experiments have (zero-shot runs have no `lora`) does not make all its keys
    vary: `lora.r` is shown only when the runs with an adapter disagree on it.
    """
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row["settings"]))
    varying = []
    for key in keys:
        values = {
            json.dumps(row["settings"][key], sort_keys=True, default=str) for row in rows if key in row["settings"]
        }
        if len(values) > 1:
            varying.append(key)
    return varying


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value


def markdown(rows: list[dict[str, Any]], failures: list[dict[str, Any]], problems: list[str]) -> str:
    from tabulate import tabulate

    lines = ["# Aggregated results", ""]
    lines.append(f"{len(rows)} finished run(s), {len(failures)} failed run(s).")
    for task_type in sorted({row["task_type"] for row in rows}):
        group = [row for row in rows if row["task_type"] == task_type]
        settings = varying_settings(group)
        metric_names = [m for m in MAIN_METRICS.get(task_type, []) if any(m in row["metrics"] for row in group)]
        header = ["experiment", "seed", *settings, *metric_names]
        table = [
            [row["experiment"], row["seed"]]
            + [_cell(row["settings"].get(key)) for key in settings]
            + [_cell(row["metrics"].get(name)) for name in metric_names]
            for row in group
        ]
        lines += ["", f"## {task_type}", "", tabulate(table, headers=header, tablefmt="github")]
    if failures:
        table = [[f["experiment"], f["seed"], f.get("exit_code"), f.get("log", "")] for f in failures]
        lines += [
            "",
            "## Failed runs",
            "",
            tabulate(table, headers=["experiment", "seed", "exit code", "log"], tablefmt="github"),
        ]
    if problems:
        lines += ["", "## Unreadable files", "", *(f"- {problem}" for problem in problems)]
    return "\n".join(lines) + "\n"


def aggregate(results_path: str | Path) -> tuple[Path, Path]:
    """Rebuild both aggregated files from the result files under `results_path`."""
    results_path = Path(results_path)
    if not results_path.is_dir():
        raise FileNotFoundError(f"results folder {results_path} does not exist")
    rows, failures, problems = collect(results_path)
    for problem in problems:
        log.warning(problem)
    document = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "varying_settings": varying_settings(rows),
        "rows": rows,
        "failures": failures,
        "problems": problems,
    }
    json_path = atomic_write_json(results_path / JSON_NAME, document)
    markdown_path = atomic_write_text(results_path / MARKDOWN_NAME, markdown(rows, failures, problems))
    return json_path, markdown_path
