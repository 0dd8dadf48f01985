"""`aggregate`: the report of a results folder, `aggregated_results.md` for people, and
`aggregated_results.json` / `.csv` (one row per experiment and seed, every setting and metric) for
pandas, rebuilt from the result files alone.

The Markdown (`sft.report.markdown`) opens with a summary (runs done / failed / missing, datasets,
models, compute time) and the settings set alike in every run; then, per dataset and task type
(`sft.report.sections`), a table of the experiments (seeds collapsed to mean ± std, best in bold), a
pivot of one metric and its plot (`sft.report.plots`); then failed and missing runs and unreadable
files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sft.report.collect import Collected, collect
from sft.report.document import AggregatedResults
from sft.report.markdown import markdown, summary
from sft.report.plots import draw_plots
from sft.report.search import search_lines
from sft.report.sections import PLOT_KINDS, ReportOptions, parse_plots, sections
from sft.report.statistics import Statistics, check_options, compute_statistics
from sft.report.tables import constant_settings, varying_settings
from sft.results.files import atomic_write_text
from sft.results.layout import REPORT_FILES
from sft.tracking.publish import GridTracking, open_grid
from sft.tracking.settings import TrackingOptions

__all__ = ["PLOT_KINDS", "ReportOptions", "aggregate", "collect", "parse_plots", "varying_settings"]

log = logging.getLogger(__name__)

JSON_NAME, CSV_NAME, MARKDOWN_NAME = REPORT_FILES
ROW_FIELDS = [
    "experiment", "seed", "status", "task_type", "dataset", "model", "config_hash", "training_key",
    "adapter_source", "finished_at",
    "n_test", "test_hash", "n_shots", "train_seconds", "inference_seconds", "total_seconds", "folder",
]  # fmt: skip


def csv_frame(rows: list[dict[str, Any]]):
    """One row per run: ROW_FIELDS, then `settings.<key>` in config order, then `metrics.<name>` sorted;
    the same column names `pandas.json_normalize(document["rows"])` gives."""
    import pandas as pd

    settings = list(dict.fromkeys(key for row in rows for key in row["settings"]))
    metrics = sorted({name for row in rows for name in row["metrics"]})
    records = [
        {field_: row.get(field_) for field_ in ROW_FIELDS}
        | {f"settings.{key}": _csv_value(row["settings"].get(key)) for key in settings}
        | {f"metrics.{name}": row["metrics"].get(name) for name in metrics}
        for row in rows
    ]
    columns = [*ROW_FIELDS, *(f"settings.{key}" for key in settings), *(f"metrics.{name}" for name in metrics)]
    # nullable dtypes keep integer settings integers (8, not 8.0) in columns with empty cells
    return pd.DataFrame.from_records(records, columns=columns).convert_dtypes()


def _csv_value(value: Any) -> Any:
    """Lists and dicts as JSON text, so a cell holds one value."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


def document(collected: Collected, plots: list[str], statistics: Statistics | None = None) -> AggregatedResults:
    """aggregated_results.json (`sft.report.document.AggregatedResults`, where each field is described)."""
    return AggregatedResults.model_validate(
        {
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "summary": summary(collected),
            "varying_settings": varying_settings(collected.rows),
            "constant_settings": {key: value for key, (value, _) in constant_settings(collected.rows).items()},
            "rows": collected.rows,
            "failures": collected.failures,
            "skipped": [],  # schema version 2 keeps the key; the runner writes no skipped state
            "missing": collected.missing,
            "problems": collected.problems,
            "plots": plots,
            "statistics": statistics.as_dict() if statistics else None,
        }
    )


def aggregate(results_path: str | Path, options: ReportOptions | None = None) -> tuple[Path, Path]:
    """Rebuild aggregated_results.{json,csv,md} (and `_plots/`) from the result files under `results_path`.

    Raises FileNotFoundError for a missing folder and ValueError for an option naming no setting or
    metric, before anything is written.
    """
    results_path = Path(results_path)
    options = options or ReportOptions()
    if not results_path.is_dir():
        raise FileNotFoundError(f"results folder {results_path} does not exist")
    collected = collect(results_path, options.expected)
    found = sections(collected.rows, options)
    check_options(options, collected.rows)
    statistics = compute_statistics(results_path, found, options) if options.statistics else None
    drawn = draw_plots(results_path, collected.rows, found, options.plots, statistics)
    collected = dataclasses.replace(collected, problems=[*collected.problems, *drawn.problems])
    for problem in collected.problems:
        log.warning(problem)
    json_path = document(collected, drawn.paths(), statistics).write(results_path / JSON_NAME)
    atomic_write_text(results_path / CSV_NAME, csv_frame(collected.rows).to_csv(index=False))
    searches = search_lines(results_path, collected.rows, statistics)  # sft.search's studies, when any
    text = markdown(collected, found, drawn, statistics) + ("\n".join(searches) + "\n" if searches else "")
    markdown_path = atomic_write_text(results_path / MARKDOWN_NAME, text)
    return json_path, markdown_path


# --- tracking (sft.tracking): the report on the grid's parent run ---------------------------------------------------


def publish_report(results_path: str | Path, grid: GridTracking) -> None:
    """Publish the run folders to the tracker (each run once), then the report and its plots on the parent."""
    results_path = Path(results_path)
    try:
        plots = AggregatedResults.read(results_path / JSON_NAME).plots
    except (OSError, ValueError):
        plots = []
    grid.publish([results_path / name for name in REPORT_FILES], plots)


def track(results_path: str | Path, options: TrackingOptions) -> str | None:
    """`aggregate --track`: publish a results folder (which may have run without tracking) to the tracker, under
    its parent run; the parent's id, or None when the tracker failed (it warned)."""
    grid = open_grid(Path(results_path), options)
    if grid is None:
        return None
    publish_report(results_path, grid)
    if not grid.record.active:  # a grid that runs now ends its parent itself
        grid.close("FINISHED" if grid.tracker.ok else "FAILED")
    return grid.record.parent_run_id if grid.tracker.ok else None
