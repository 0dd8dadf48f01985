"""The aggregated report of a results folder: `aggregated_results.md` for people, and
`aggregated_results.json` / `.csv` (one row per experiment and seed, every setting and metric) for
pandas.

The Markdown opens with a summary (runs done / failed / skipped / missing, datasets, models, compute
time) and the settings constant across the grid; then, per dataset and task type, a table of the
experiments (seeds collapsed to mean ± std, best in bold), a pivot of one metric and its plot; then
failed, skipped and missing runs and unreadable files. It holds no timestamp or absolute path, so the
same result files always give the same Markdown.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sft.collect import Collected, collect, flatten, is_number
from sft.metrics import MAIN_METRICS
from sft.registry import did_you_mean
from sft.storage import atomic_write_json, atomic_write_text, read_jsonl
from sft.tables import (
    Pivot,
    constant_settings,
    default_pivot_keys,
    experiment_table,
    higher_is_better,
    pivot,
    pivot_table,
    resolve_key,
    setting_text,
    varying_settings,
)

__all__ = ["ReportOptions", "aggregate", "collect", "flatten", "varying_settings"]

log = logging.getLogger(__name__)

JSON_NAME = "aggregated_results.json"
MARKDOWN_NAME = "aggregated_results.md"
CSV_NAME = "aggregated_results.csv"
PLOTS_FOLDER = "_plots"  # experiment names start with a letter or digit, so this never collides
SCHEMA_VERSION = 2  # 1 was the unversioned foundation format (no csv, no summary)
PLOT_KINDS = ("metric", "confusion", "reliability")
ROW_FIELDS = [
    "experiment", "seed", "status", "task_type", "dataset", "model", "config_hash", "finished_at",
    "n_test", "n_shots", "train_seconds", "inference_seconds", "total_seconds", "folder",
]  # fmt: skip
# The metric of the pivot and the plot when --metric is not given.
HEADLINE_METRIC = {"classification": "f1_macro", "multilabel": "f1_macro", "generation": "bleu"}
FAILURE_LINES = 5


@dataclass
class ReportOptions:
    """What `aggregate` shows beyond the default tables (the CLI options of the same names)."""

    rows: list[str] | None = None  # pivot rows (dotted setting keys); default DEFAULT_PIVOT_ROWS that vary
    cols: list[str] | None = None  # pivot columns; default dataset.shots
    metric: str | None = None  # pivot and plot metric; default HEADLINE_METRIC of the task type
    plots: frozenset[str] = frozenset({"metric"})
    expected: list[tuple[str, int | None]] | None = None  # the grid's (experiment, seed); seed None = any


def parse_plots(text: str) -> frozenset[str]:
    """`metric,confusion` -> {"metric", "confusion"}; `all` and `none` as expected."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    if names == {"none"}:
        return frozenset()
    if names == {"all"}:
        return frozenset(PLOT_KINDS)
    unknown = sorted(names - set(PLOT_KINDS))
    if unknown:
        raise ValueError(
            f"--plots: unknown plot {unknown[0]!r}{did_you_mean(unknown[0], PLOT_KINDS)}; "
            f"choose from {', '.join(PLOT_KINDS)}, all or none"
        )
    return frozenset(names)


@dataclass
class Section:
    """One dataset and task type: its rows, table, pivot and plot."""

    dataset: str
    task_type: str
    rows: list[dict[str, Any]]
    metrics: list[str] = field(default_factory=list)
    pivot: Pivot | None = None
    note: str = ""
    plot: str | None = None

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.task_type}"


def main_metrics(rows: list[dict[str, Any]], task_type: str) -> list[str]:
    """The task type's main metrics that some run has; every top-level metric for an unknown task type."""
    present: dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row["metrics"]))
    if task_type in MAIN_METRICS:
        return [metric for metric in MAIN_METRICS[task_type] if metric in present]  # type: ignore[index]
    return sorted(metric for metric in present if "." not in metric)


def sections(rows: list[dict[str, Any]], options: ReportOptions) -> list[Section]:
    """Group rows by (dataset, task type) and build each group's pivot; raise on an unknown option."""
    available = list(dict.fromkeys(key for row in rows for key in row["settings"]))
    row_keys = [resolve_key(key, available, "--rows") for key in options.rows] if options.rows else None
    col_keys = [resolve_key(key, available, "--cols") for key in options.cols] if options.cols else None
    all_metrics = {metric for row in rows for metric in row["metrics"]}
    if options.metric and rows and options.metric not in all_metrics:
        hint = did_you_mean(options.metric, all_metrics)
        raise ValueError(f"--metric: no run has the metric {options.metric!r}{hint}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["task_type"]), []).append(row)
    found = []
    for (dataset, task_type), group in sorted(groups.items()):
        section = Section(dataset, task_type, group, main_metrics(group, task_type))
        metric = options.metric or _headline(group, task_type, section.metrics)
        if metric is None or not any(is_number(row["metrics"].get(metric)) for row in group):
            section.note = f"No run here has the metric {metric!r}, so there is no pivot."
        else:
            default_rows, default_cols = default_pivot_keys(group)
            section.pivot = pivot(group, row_keys or default_rows, col_keys or default_cols, metric)
        found.append(section)
    return found


def _headline(rows: list[dict[str, Any]], task_type: str, metrics: list[str]) -> str | None:
    preferred = HEADLINE_METRIC.get(task_type)
    if preferred and any(preferred in row["metrics"] for row in rows):
        return preferred
    return metrics[0] if metrics else None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text).strip("_")[:80]


# -- plots -----------------------------------------------------------------------------------------------


def draw_plots(root: Path, collected: Collected, found: list[Section], kinds: frozenset[str]) -> dict[str, dict]:
    """Write the requested PNGs under `_plots/` (replacing older ones); experiment -> {kind: path}."""
    from sft.plots import metric_plot

    folder = root / PLOTS_FOLDER
    if folder.is_dir():
        shutil.rmtree(folder)  # the report's own folder: stale plots of removed runs must not linger
    if "metric" in kinds:
        for section in found:
            if section.pivot is not None and len(section.pivot.cols) >= 2:
                name = f"{_slug(section.dataset)}_{section.task_type}_{_slug(section.pivot.metric)}.png"
                title = f"{section.dataset}: {section.pivot.metric}"
                section.plot = _plot(
                    root, f"{PLOTS_FOLDER}/{name}", collected.problems, metric_plot, section.pivot, title
                )
    per_experiment: dict[str, dict] = {}
    if kinds & {"confusion", "reliability"}:
        for experiment, rows in _by_experiment(collected.rows).items():
            plots = _experiment_plots(root, experiment, rows, kinds, collected.problems)
            if plots:
                per_experiment[experiment] = plots
    return per_experiment


def _plot(root: Path, relative: str, problems: list[str], draw: Any, *args: Any) -> str | None:
    """Draw one PNG; a plot that fails (odd predictions, a matplotlib problem) is named in the report's
    problems instead of costing the whole report."""
    try:
        draw(root / relative, *args)
    except Exception as error:  # any failure of one plot must leave the rest of the report
        problems.append(f"{relative}: plot failed ({type(error).__name__}: {error})")
        return None
    return relative


def _by_experiment(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["task_type"] == "classification":
            grouped.setdefault(row["experiment"], []).append(row)
    return grouped


def _experiment_plots(root: Path, experiment: str, rows: list[dict[str, Any]], kinds: frozenset[str],
                      problems: list[str]) -> dict[str, str]:  # fmt: skip
    """Confusion matrix and reliability diagram of one experiment, pooled over its seeds' predictions."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    from sft.plots import confusion_plot, reliability_plot

    predictions: list[dict[str, Any]] = []
    for row in rows:
        path = f"{row['folder']}/predictions.jsonl"
        if not (root / path).is_file():
            continue
        try:
            predictions += [p for p in read_jsonl(root / path) if "reference" in p and "prediction" in p]
        except (OSError, ValueError) as error:
            problems.append(f"{path}: unreadable predictions ({type(error).__name__}: {error})")
    if not predictions:
        return {}
    seeds = f"{len(rows)} seed(s)"
    plots: dict[str, str | None] = {}
    references = [str(p["reference"]) for p in predictions]
    probabilities = [p["probabilities"] for p in predictions if isinstance(p.get("probabilities"), dict)]
    predicted = [str(p["prediction"]) for p in predictions]
    # the label order of the probabilities, then anything else the references or predictions hold
    labels = list(dict.fromkeys([*(probabilities[0] if probabilities else []), *sorted({*references, *predicted})]))
    folder = f"{PLOTS_FOLDER}/{experiment}"
    if "confusion" in kinds:
        matrix = np.asarray(confusion_matrix(references, predicted, labels=labels))
        title = f"{experiment}: confusion matrix ({seeds})"
        plots["confusion matrix"] = _plot(
            root, f"{folder}/confusion.png", problems, confusion_plot, labels, matrix, title
        )
    if "reliability" in kinds and len(probabilities) == len(predictions):
        bins = int(rows[0]["settings"].get("evaluation.ece_bins") or 10)
        title = f"{experiment}: reliability ({seeds})"
        plots["reliability diagram"] = _plot(
            root, f"{folder}/reliability.png", problems, reliability_plot, probabilities, references, title, bins
        )
    return {kind: path for kind, path in plots.items() if path}


# -- Markdown --------------------------------------------------------------------------------------------


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def summary(collected: Collected) -> dict[str, Any]:
    rows = collected.rows
    done = sum(row["total_seconds"] for row in rows if is_number(row["total_seconds"]))
    failed = sum(f["duration_seconds"] for f in collected.failures if is_number(f.get("duration_seconds")))
    return {
        "runs_done": len(rows),
        "runs_failed": len(collected.failures),
        "runs_skipped": len(collected.skipped),
        "runs_missing": len(collected.missing),
        "experiments_done": len({row["experiment"] for row in rows}),
        "datasets": sorted({row["dataset"] for row in rows}),
        "models": sorted({str(row["model"]) for row in rows}),
        "compute_seconds": done,
        "failed_compute_seconds": failed,
    }


def _table(header: list[str], lines: list[list[str]]) -> str:
    from tabulate import tabulate

    return tabulate(lines, headers=header, tablefmt="github", disable_numparse=True)


def _summary_lines(facts: dict[str, Any], collected: Collected) -> list[str]:
    lines = [
        f"- Runs: {facts['runs_done']} done ({facts['experiments_done']} experiment(s)), {facts['runs_failed']} "
        f"failed, {facts['runs_skipped']} skipped, {facts['runs_missing']} missing",
        f"- Datasets: {', '.join(facts['datasets']) or NONE}",
        f"- Models: {', '.join(facts['models']) or NONE}",
        f"- Compute time: {duration_text(facts['compute_seconds'])} in finished runs"
        + (f", {duration_text(facts['failed_compute_seconds'])} in failed runs" if collected.failures else ""),
    ]
    if collected.problems:
        lines.append(f"- Unreadable files: {len(collected.problems)} (listed at the end)")
    return lines


NONE = "none"


def _constant_lines(rows: list[dict[str, Any]]) -> list[str]:
    constant = constant_settings(rows)
    if not constant:
        return []
    table = [
        [key, setting_text(value), "all" if count == len(rows) else f"{count} of {len(rows)}"]
        for key, (value, count) in constant.items()
    ]
    return [
        "",
        f"<details><summary>Settings constant across the grid ({len(constant)})</summary>",
        "",
        _table(["setting", "value", "runs"], table),
        "",
        "</details>",
    ]


def _section_lines(section: Section) -> list[str]:
    lower = [metric for metric in section.metrics if not higher_is_better(metric)]
    direction = f"; lower is better for {', '.join(lower)}" if lower else ""
    lines = ["", f"## {section.title}", ""]
    lines += [f"Mean ± standard deviation over seeds (n = seeds); best per column in bold{direction}.", ""]
    lines.append(_table(*experiment_table(section.rows, section.metrics)))
    table = section.pivot
    if table is None:
        return [*lines, "", section.note]
    lines += ["", f"### {table.metric} by {' × '.join(table.row_keys)} and {' × '.join(table.col_keys)}", ""]
    lines += ["Mean ± standard deviation (runs) in each cell; best per column in bold.", ""]
    lines.append(_table(*pivot_table(table)))
    if table.pooled:
        lines += ["", f"Cells pool runs that differ in {', '.join(table.pooled)}; add them to --rows or --cols."]
    if section.plot:
        lines += ["", f"![{table.metric} against {', '.join(table.col_keys)}]({section.plot})"]
    return lines


def _run_lines(collected: Collected, per_experiment: dict[str, dict]) -> list[str]:
    lines: list[str] = []
    if per_experiment:
        lines += ["", "## Per-experiment plots"]
        for experiment, plots in per_experiment.items():
            lines += ["", f"### {experiment}", "", " ".join(f"![{kind}]({path})" for kind, path in plots.items())]
    if collected.failures:
        table = [
            [f["experiment"], str(f["seed"]), f["state"], setting_text(f.get("exit_code")), f["log"]]
            for f in collected.failures
        ]
        lines += ["", "## Failed runs", "", _table(["experiment", "seed", "state", "exit code", "log"], table)]
        for failure in collected.failures:
            tail = [line for line in failure["log_tail"].splitlines() if line.strip()][-FAILURE_LINES:]
            lines += ["", f"{failure['experiment']} seed {failure['seed']}, last lines of its log:", "", "```text"]
            lines += [*(tail or ["(empty log)"]), "```"]
    if collected.skipped:
        table = [[s["experiment"], str(s["seed"]), setting_text(s.get("reason"))] for s in collected.skipped]
        lines += ["", "## Skipped runs", "", _table(["experiment", "seed", "reason"], table)]
    if collected.missing:
        table = [[m["experiment"], setting_text(m["seed"]), m["state"]] for m in collected.missing]
        lines += ["", "## Missing runs", "", "Runs of the grid without a result yet.", ""]
        lines.append(_table(["experiment", "seed", "state"], table))
    if collected.problems:
        lines += ["", "## Unreadable files", "", *(f"- {problem}" for problem in collected.problems)]
    return lines


def markdown(collected: Collected, found: list[Section], per_experiment: dict[str, dict]) -> str:
    lines = ["# Aggregated results", "", *_summary_lines(summary(collected), collected)]
    lines += _constant_lines(collected.rows)
    for section in found:
        lines += _section_lines(section)
    lines += _run_lines(collected, per_experiment)
    return "\n".join(lines) + "\n"


# -- JSON and CSV ----------------------------------------------------------------------------------------


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


def document(collected: Collected, plots: list[str]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "summary": summary(collected),
        "varying_settings": varying_settings(collected.rows),
        "constant_settings": {key: value for key, (value, _) in constant_settings(collected.rows).items()},
        "rows": collected.rows,
        "failures": collected.failures,
        "skipped": collected.skipped,
        "missing": collected.missing,
        "problems": collected.problems,
        "plots": plots,
    }


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
    per_experiment = draw_plots(results_path, collected, found, options.plots)
    for problem in collected.problems:
        log.warning(problem)
    plots = [s.plot for s in found if s.plot] + [p for plots in per_experiment.values() for p in plots.values()]
    json_path = atomic_write_json(results_path / JSON_NAME, document(collected, plots))
    atomic_write_text(results_path / CSV_NAME, csv_frame(collected.rows).to_csv(index=False))
    markdown_path = atomic_write_text(results_path / MARKDOWN_NAME, markdown(collected, found, per_experiment))
    return json_path, markdown_path
