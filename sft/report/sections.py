"""The report's sections: one per dataset and task type, with the task's table metrics and a pivot of
one metric (the task's headline metric unless `--metric` says otherwise)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sft.registry import did_you_mean
from sft.report.collect import is_number
from sft.report.tables import Pivot, default_pivot_keys, pivot, resolve_key
from sft.tasks import TASKS

PLOT_KINDS = ("metric", "forest", "confusion", "reliability", "learning_curve")
DEFAULT_PLOTS = frozenset({"metric", "forest"})


@dataclass
class ReportOptions:
    """What `aggregate` shows beyond the default tables (the CLI options of the same names)."""

    rows: list[str] | None = None  # pivot rows (dotted setting keys); default DEFAULT_PIVOT_ROWS that vary
    cols: list[str] | None = None  # pivot columns; default dataset.shots
    metric: str | None = None  # pivot and plot metric; default the task's headline metric
    plots: frozenset[str] = DEFAULT_PLOTS
    expected: Sequence[tuple[str, int | None]] | None = None  # the grid's (experiment, seed); seed None = any
    # which differences are real (sft.report.statistics): intervals and paired comparisons
    statistics: bool = True
    baseline: str | None = None  # compare every experiment with this one; default: with the best of its table
    resamples: int = 1000  # bootstrap resamples and permutations
    level: float = 0.95  # confidence level of the intervals; the tests' significance level is 1 - level
    method: str = "percentile"  # bootstrap interval: percentile or bca
    seed: int = 0  # of the resamples: the same result files always give the same report
    mcnemar: str = "exact"  # one seed, accuracy-like metrics: McNemar's exact test or its mid-p variant


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


@dataclass(frozen=True)
class Section:
    """One dataset and task type: its rows, table metrics, and its pivot or why there is none."""

    dataset: str
    task_type: str
    rows: list[dict[str, Any]]
    metrics: list[str] = field(default_factory=list)
    pivot: Pivot | None = None
    note: str = ""

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.task_type}"


def main_metrics(rows: list[dict[str, Any]], task_type: str) -> list[str]:
    """The task type's main metrics that some run has; every top-level metric for an unknown task type."""
    present: dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row["metrics"]))
    if task_type in TASKS:
        return [metric for metric in TASKS[task_type].table_metrics if metric in present]
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
        metrics = main_metrics(group, task_type)
        metric = options.metric or _headline(group, task_type, metrics)
        if metric is None or not any(is_number(row["metrics"].get(metric)) for row in group):
            note = f"No run here has the metric {metric!r}, so there is no pivot."
            found.append(Section(dataset, task_type, group, metrics, note=note))
            continue
        default_rows, default_cols = default_pivot_keys(group)
        table = pivot(group, row_keys or default_rows, col_keys or default_cols, metric)
        found.append(Section(dataset, task_type, group, metrics, pivot=table))
    return found


def _headline(rows: list[dict[str, Any]], task_type: str, metrics: list[str]) -> str | None:
    preferred = TASKS[task_type].headline_metric if task_type in TASKS else None
    if preferred and any(preferred in row["metrics"] for row in rows):
        return preferred
    return metrics[0] if metrics else None
