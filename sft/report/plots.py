"""PNG plots for the report (matplotlib figures rendered by Agg, imported inside the functions), and the
report's `_plots/` folder that holds them.

Every figure is FIGURE_SIZE at DPI, so a PNG is always WIDTH x HEIGHT pixels: the metric against
shots (one line per pivot row, error bars = standard deviation across seeds), and per experiment a
confusion matrix and a reliability diagram pooled over its seeds' predictions.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sft.config.parsing import schema_default
from sft.report.statistics import forest_rows
from sft.report.tables import Pivot, column_label, setting_text
from sft.results.files import read_jsonl
from sft.results.layout import slug
from sft.tasks import TASKS

if TYPE_CHECKING:
    from sft.report.sections import Section
    from sft.report.statistics import ForestRow, Statistics

FIGURE_SIZE = (6.4, 4.0)  # inches
DPI = 100
WIDTH, HEIGHT = int(FIGURE_SIZE[0] * DPI), int(FIGURE_SIZE[1] * DPI)


def _figure(layout: Literal["constrained", "compressed", "tight"] | None = "constrained"):
    from matplotlib.figure import Figure

    # A bare Figure (not pyplot) renders with Agg without touching the process-wide backend (a user's
    # notebook keeps its own) and is never registered globally, so nothing leaks between plots.
    return Figure(figsize=FIGURE_SIZE, dpi=DPI, layout=layout)


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")  # no bbox_inches="tight": the size stays fixed
    return path


def _short(key: str, value: Any) -> str:
    if value is None:  # a section the run does not have: zero-shot runs have no lora
        return f"no {key.split('.')[0]}"
    if key == "model.name" and isinstance(value, str):
        return value.rstrip("/").rsplit("/", 1)[-1]  # "Qwen/Qwen2.5-0.5B" -> "Qwen2.5-0.5B"
    return f"{key.rsplit('.', 1)[-1]}={setting_text(value)}"


def metric_plot(path: Path, table: Pivot, title: str) -> Path:
    """The pivot as lines: x = its columns (evenly spaced, e.g. shots 0, 8, 16, 64), one line per row."""
    figure = _figure()
    axes = figure.add_subplot()
    positions = np.arange(len(table.cols))
    for row in table.rows:
        cells = [table.cells.get((row, col)) for col in table.cols]
        x = [p for p, cell in zip(positions, cells) if cell is not None]
        y = [cell.mean for cell in cells if cell is not None]
        error = [cell.std or 0.0 for cell in cells if cell is not None]
        label = ", ".join(_short(key, value) for key, value in zip(table.row_keys, row))
        axes.errorbar(x, y, yerr=error, marker="o", capsize=3, label=label)
    axes.set_xticks(positions, [column_label(table.col_keys, col) for col in table.cols])
    axes.set_xlabel(", ".join(table.col_keys))
    axes.set_ylabel(table.metric)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    if table.rows:
        axes.legend(fontsize=7, loc="best")
    return _save(figure, path)


FOREST_COLORS = {"best": "black", "baseline": "black", "same": "tab:blue", "different": "tab:grey", "": "tab:grey"}


def forest_plot(path: Path, rows: list[ForestRow], metric: str, title: str) -> Path:
    """One line per experiment, best at the top: its mean and interval; the reference as a black
    diamond, experiments not significantly different from it in blue, the others grey."""
    figure = _figure(layout=None)  # fixed margins: constrained layout would cost as much as the drawing
    figure.subplots_adjust(left=0.32, right=0.97, top=0.9, bottom=0.13)
    axes = figure.add_subplot()
    ordered = list(reversed(rows))  # best at the top
    positions = np.arange(len(ordered))
    # One collection of interval lines and one marker series per status (not two artists per row): the
    # plot is drawn with every report, and matplotlib's cost grows with its artists.
    with_interval = [(p, row.interval, row.status) for p, row in zip(positions, ordered) if row.interval is not None]
    if with_interval:
        axes.hlines(
            [p for p, _, _ in with_interval], [interval.low for _, interval, _ in with_interval],
            [interval.high for _, interval, _ in with_interval],
            colors=[FOREST_COLORS.get(status, "tab:grey") for _, _, status in with_interval], linewidth=2,
        )  # fmt: skip
    for status in dict.fromkeys(row.status for row in ordered):
        members = [(p, row) for p, row in zip(positions, ordered) if row.status == status]
        marker = "D" if status in ("best", "baseline") else "o"
        axes.plot([row.mean for _, row in members], [p for p, _ in members], linestyle="none", marker=marker,
                  color=FOREST_COLORS.get(status, "tab:grey"), markersize=6)  # fmt: skip
    labels = [f"{row.experiment} ({row.status})" if row.status in ("best", "baseline") else row.experiment
              for row in ordered]  # fmt: skip
    axes.set_yticks(positions, labels, fontsize=7)
    axes.set_xlabel(f"{metric} (intervals as in the table)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3, axis="x")
    return _save(figure, path)


def confusion_plot(path: Path, labels: list[str], matrix: np.ndarray, title: str) -> Path:
    """Counts with references as rows and predictions as columns, both in label order."""
    figure = _figure()
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(ticks, labels, fontsize=8)
    axes.set_xlabel("prediction")
    axes.set_ylabel("reference")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        axes.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    axes.set_title(title, fontsize=10)
    return _save(figure, path)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Equal-width confidence bins as sft.evaluation.metrics' ECE uses them: bin b holds (b/n, (b+1)/n]."""
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
    return {"counts": counts, "accuracy": accuracy, "confidence": mean_confidence}


def expected_calibration_error(bins: dict[str, np.ndarray]) -> float:
    share = bins["counts"] / max(bins["counts"].sum(), 1)
    gaps = np.abs(bins["accuracy"] - bins["confidence"])
    return float(np.nansum(share * gaps))


def reliability_plot(path: Path, probabilities: list[dict[str, float]], references: list[str], title: str,
                     n_bins: int = 10) -> Path:  # fmt: skip
    """Accuracy against top-label confidence per bin; the diagonal is perfect calibration."""
    labels = list(probabilities[0])
    matrix = np.array([[p[label] for label in labels] for p in probabilities], dtype=float)
    confidence = matrix.max(axis=1)
    correct = (np.asarray(labels)[matrix.argmax(axis=1)] == np.asarray(references, dtype=object)).astype(float)
    bins = reliability_bins(confidence, correct, n_bins)
    figure = _figure()
    axes = figure.add_subplot()
    edges = np.linspace(0, 1, n_bins + 1)
    filled = bins["counts"] > 0
    axes.bar(edges[:-1][filled], bins["accuracy"][filled], width=1 / n_bins, align="edge", edgecolor="black",
             alpha=0.7, label="accuracy")  # fmt: skip
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top label)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"{title}\nECE {expected_calibration_error(bins):.4f}, {len(references)} predictions", fontsize=10)
    axes.legend(fontsize=8, loc="upper left")
    return _save(figure, path)


# -- the report's plot files -------------------------------------------------------------------------------

PLOTS_FOLDER = "_plots"  # experiment names start with a letter or digit, so this never collides


@dataclass(frozen=True)
class Drawn:
    """The PNGs a report links (paths relative to the results folder) and the plots that failed."""

    sections: dict[tuple[str, str], str] = field(default_factory=dict)  # (dataset, task type) -> metric plot
    forests: dict[tuple[str, str], str] = field(default_factory=dict)  # (dataset, task type) -> forest plot
    experiments: dict[str, dict[str, str]] = field(default_factory=dict)  # experiment -> {kind: path}
    problems: list[str] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [
            *self.sections.values(),
            *self.forests.values(),
            *(path for plots in self.experiments.values() for path in plots.values()),
        ]


def draw_plots(
    root: Path, rows: list[dict[str, Any]], found: list[Section], kinds: frozenset[str],
    statistics: Statistics | None = None,
) -> Drawn:  # fmt: skip
    """Write the requested PNGs under `_plots/`, replacing older ones."""
    folder = root / PLOTS_FOLDER
    if folder.is_dir():
        shutil.rmtree(folder)  # the report's own folder: stale plots of removed runs must not linger
    sections: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    if "metric" in kinds:
        for section in found:
            if section.pivot is not None and len(section.pivot.cols) >= 2:
                name = f"{slug(section.dataset, 80)}_{section.task_type}_{slug(section.pivot.metric, 80)}.png"
                title = f"{section.dataset}: {section.pivot.metric}"
                path, problem = _plot(root, f"{PLOTS_FOLDER}/{name}", metric_plot, section.pivot, title)
                if path:
                    sections[(section.dataset, section.task_type)] = path
                problems += [problem] if problem else []
    forests, forest_problems = _forest_plots(root, found, statistics) if "forest" in kinds else ({}, [])
    problems += forest_problems
    experiments: dict[str, dict[str, str]] = {}
    for experiment, members in _by_experiment(rows, kinds).items():
        plots, found_problems = _experiment_plots(root, experiment, members, kinds)
        problems += found_problems
        if plots:
            experiments[experiment] = plots
    if "learning_curve" in kinds:
        for experiment, members in _selected(rows).items():
            relative = f"{PLOTS_FOLDER}/{experiment}/learning_curve.png"
            path, problem = _plot(root, relative, learning_curve_plot, members, f"{experiment}: learning curve")
            if path:
                experiments.setdefault(experiment, {})["learning curve"] = path
            problems += [problem] if problem else []
    return Drawn(sections, forests, experiments, problems)


def _forest_plots(
    root: Path, found: list[Section], statistics: Statistics | None
) -> tuple[dict[tuple[str, str], str], list[str]]:
    """A forest plot of each section's pivot metric, where some experiment has an interval."""
    paths: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    for section in found:
        section_statistics = statistics.of(section) if statistics else None
        if section.pivot is None or section_statistics is None:
            continue
        rows = forest_rows(section, section_statistics, section.pivot.metric)
        if len(rows) < 2 or not any(row.interval for row in rows):
            continue
        name = f"{slug(section.dataset, 80)}_{section.task_type}_{slug(section.pivot.metric, 80)}_forest.png"
        title = f"{section.dataset}: {section.pivot.metric}, {section_statistics.level:.0%} intervals"
        path, problem = _plot(root, f"{PLOTS_FOLDER}/{name}", forest_plot, rows, section.pivot.metric, title)
        if path:
            paths[(section.dataset, section.task_type)] = path
        problems += [problem] if problem else []
    return paths, problems


def _selected(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of every experiment that evaluated during training (any task), by experiment."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("selection") and row["selection"].get("learning_curve"):
            grouped.setdefault(row["experiment"], []).append(row)
    return grouped


def learning_curve_plot(path: Path, rows: list[dict[str, Any]], title: str) -> Path:
    """Per seed: the validation metric that picked the adapter against the training step (solid, left
    axis), the validation loss (dashed, right axis), and the kept step (a marker on the metric line)."""
    figure = _figure()
    axes = figure.add_subplot()
    losses = axes.twinx()
    metric = str(rows[0]["selection"].get("metric"))
    for index, row in enumerate(rows):
        selection, color = row["selection"], f"C{index % 10}"
        curve = selection["learning_curve"]
        steps = [point["step"] for point in curve]
        values = [point["validation_loss"] if metric == "loss" else point["metrics"].get(metric) for point in curve]
        axes.plot(steps, values, marker=".", color=color, label=f"seed {row['seed']}")
        if selection.get("best_step") in steps:
            best = steps.index(selection["best_step"])
            axes.plot([steps[best]], [values[best]], marker="*", markersize=12, color=color)
        validation = [point.get("validation_loss") for point in curve]
        if metric != "loss" and all(value is not None for value in validation):
            losses.plot(steps, validation, linestyle="--", color=color, alpha=0.5)
    axes.set_xlabel("training step")
    axes.set_ylabel(f"validation {metric} (★ kept)")
    losses.set_ylabel("validation loss (dashed)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    return _save(figure, path)


def _plot(root: Path, relative: str, draw: Any, *args: Any) -> tuple[str | None, str | None]:
    """Draw one PNG: (its path, None), or (None, the problem) when it fails (odd predictions, a matplotlib
    problem), so one plot never costs the whole report."""
    try:
        draw(root / relative, *args)
    except Exception as error:  # any failure of one plot must leave the rest of the report
        return None, f"{relative}: plot failed ({type(error).__name__}: {error})"
    return relative, None


def _by_experiment(rows: list[dict[str, Any]], kinds: frozenset[str]) -> dict[str, list[dict[str, Any]]]:
    """The rows of every experiment whose task has one of the per-experiment plots `kinds` asks for."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        task = TASKS.get(row["task_type"])
        if task is not None and task.report_plots & kinds:
            grouped.setdefault(row["experiment"], []).append(row)
    return grouped


def _experiment_plots(
    root: Path, experiment: str, rows: list[dict[str, Any]], kinds: frozenset[str]
) -> tuple[dict[str, str], list[str]]:
    """Confusion matrix and reliability diagram of one experiment, pooled over its seeds' predictions."""
    from sklearn.metrics import confusion_matrix

    predictions: list[dict[str, Any]] = []
    problems: list[str] = []
    for row in rows:
        path = f"{row['folder']}/predictions.jsonl"
        if not (root / path).is_file():
            continue
        try:
            predictions += [p for p in read_jsonl(root / path) if "reference" in p and "prediction" in p]
        except (OSError, ValueError) as error:
            problems.append(f"{path}: unreadable predictions ({type(error).__name__}: {error})")
    if not predictions:
        return {}, problems
    seeds = f"{len(rows)} seed(s)"
    plots: dict[str, tuple[str | None, str | None]] = {}
    references = [str(p["reference"]) for p in predictions]
    probabilities = [p["probabilities"] for p in predictions if isinstance(p.get("probabilities"), dict)]
    predicted = [str(p["prediction"]) for p in predictions]
    # the label order of the probabilities, then anything else the references or predictions hold
    labels = list(dict.fromkeys([*(probabilities[0] if probabilities else []), *sorted({*references, *predicted})]))
    folder = f"{PLOTS_FOLDER}/{experiment}"
    if "confusion" in kinds:
        matrix = np.asarray(confusion_matrix(references, predicted, labels=labels))
        title = f"{experiment}: confusion matrix ({seeds})"
        plots["confusion matrix"] = _plot(root, f"{folder}/confusion.png", confusion_plot, labels, matrix, title)
    if "reliability" in kinds and len(probabilities) == len(predictions):
        bins = int(rows[0]["settings"].get("evaluation.ece_bins") or schema_default("evaluation.ece_bins"))
        title = f"{experiment}: reliability ({seeds})"
        plots["reliability diagram"] = _plot(
            root, f"{folder}/reliability.png", reliability_plot, probabilities, references, title, bins
        )
    problems += [problem for _, problem in plots.values() if problem]
    return {kind: path for kind, (path, _) in plots.items() if path}, problems
