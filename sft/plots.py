"""PNG plots for the report (matplotlib figures rendered by Agg, imported inside the functions).

Every figure is FIGURE_SIZE at DPI, so a PNG is always WIDTH x HEIGHT pixels: the metric against
shots (one line per pivot row, error bars = standard deviation across seeds), and per experiment a
confusion matrix and a reliability diagram pooled over its seeds' predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sft.tables import Pivot, column_label, setting_text

FIGURE_SIZE = (6.4, 4.0)  # inches
DPI = 100
WIDTH, HEIGHT = int(FIGURE_SIZE[0] * DPI), int(FIGURE_SIZE[1] * DPI)


def _figure():
    from matplotlib.figure import Figure

    # A bare Figure (not pyplot) renders with Agg without touching the process-wide backend (a user's
    # notebook keeps its own) and is never registered globally, so nothing leaks between plots.
    return Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")


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
    """Equal-width confidence bins as sft.metrics' ECE uses them: bin b holds (b/n, (b+1)/n]."""
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
