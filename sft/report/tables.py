"""The tables of the report: experiments with their seeds collapsed to mean ± std, the best value of
each metric in bold, and pivots (rows x columns of settings, one metric per cell).

Cells are mean ± sample standard deviation (ddof=1) over the runs they hold; one run shows its value
alone. Whether higher or lower is better is what each metric declared where it is registered
(`sft.evaluation.metrics.higher_is_better`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sft.evaluation.metrics import higher_is_better
from sft.registry import did_you_mean
from sft.report.collect import is_number

if TYPE_CHECKING:
    from sft.report.intervals import Interval
    from sft.report.statistics import SectionStatistics

# The usual few-shot grid: model x adapter initialization x in-context examples, against shots.
DEFAULT_PIVOT_ROWS = ("model.name", "model.head", "lora.init_lora_weights", "inference.icl_examples")
# Dotted keys of a search space (`search.space.<field>.<distribution key>`), left out of the settings tables.
SEARCH_SPACE = "search.space."
DEFAULT_PIVOT_COLS = ("dataset.shots",)
NONE_TEXT = "—"
CELL_CHARACTERS = 80  # longer settings (a chat template, a long instruction) are cut in the Markdown
SAME_AS_REFERENCE = "≈"  # marks a cell not significantly different from the best (or the baseline)


def format_number(value: float, like: float | None = None) -> str:
    """Four decimals for scores in [0, 1]-like ranges, two for BLEU-like 0-100 scales (judged on `like`)."""
    return f"{value:.2f}" if abs(value if like is None else like) >= 10 else f"{value:.4f}"


def setting_text(value: Any) -> str:
    """A setting as a Markdown table cell: one line, no pipes; a missing section shows as a dash."""
    if value is None:
        return NONE_TEXT
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    if len(text) > CELL_CHARACTERS:
        text = text[: CELL_CHARACTERS - 1] + "…"
    return text.replace("|", "\\|")


def sort_key(value: Any) -> tuple:
    """Orders setting values naturally: missing, booleans, numbers (8 < 16), then text."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if is_number(value):
        return (2, value, "")
    return (3, 0, value if isinstance(value, str) else json.dumps(value, sort_keys=True))


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[Any]) -> Stats | None:
        numbers = [float(v) for v in values if is_number(v) and not math.isnan(v)]
        if not numbers:
            return None
        mean = math.fsum(numbers) / len(numbers)
        if len(numbers) == 1:
            return cls(mean, None, 1)
        variance = math.fsum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1)
        return cls(mean, math.sqrt(variance), len(numbers))

    def text(self, count: bool = False, interval: Interval | None = None) -> str:
        text = format_number(self.mean)
        if self.std is not None:  # with the mean's decimals, so "20.50 ± 0.71"
            text += f" ± {format_number(self.std, like=self.mean)}"
        if interval is not None:
            text += f" [{format_number(interval.low, like=self.mean)}, {format_number(interval.high, like=self.mean)}]"
        return f"{text} ({self.n})" if count else text


def varying_settings(rows: list[dict[str, Any]]) -> list[str]:
    """Setting keys whose values differ between the rows that set them, in config order.

    A section only some experiments have (zero-shot runs have no `lora`) does not make all its keys
    vary: `lora.r` is shown only when the runs with an adapter disagree on it.
    """
    return [key for key, values in _setting_values(rows).items() if len(values) > 1]


def constant_settings(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, int]]:
    """key -> (its one value, how many rows set it), for keys every row that sets them agrees on."""
    return {
        key: (next(iter(values.values())), sum(key in row["settings"] for row in rows))
        for key, values in _setting_values(rows).items()
        if len(values) == 1
    }


def _setting_values(rows: list[dict[str, Any]]) -> dict[str, dict[Any, Any]]:
    """key -> {comparable form: value} of its distinct values. A section that is empty or absent in
    some runs (`lora` null in zero-shot runs, `dataset.args` {}) is left out where other runs have
    keys inside it. A search's space is left out too: its distributions are no setting of the runs (their
    chosen values are), and each search's section of the report shows its space."""
    values: dict[str, dict[Any, Any]] = {}
    for row in rows:
        for key, value in row["settings"].items():
            if not key.startswith(SEARCH_SPACE):
                values.setdefault(key, {}).setdefault(_comparable(value), value)
    prefixes = {key.rsplit(".", i)[0] for key in values for i in range(1, key.count(".") + 1)}
    return {key: found for key, found in values.items() if key not in prefixes}


def _comparable(value: Any) -> Any:
    """Hashable, and 1 != True != "1" (JSON text only for the rare lists and dicts: it is slow)."""
    if isinstance(value, (list, dict)):
        return ("json", json.dumps(value, sort_keys=True, default=str))
    return (type(value).__name__, value)


def best_lines(cells: list[Stats | None], higher: bool) -> set[int]:
    """Indexes of the cells holding the best mean (ties all bold); none when every value ties."""
    means = [cell.mean for cell in cells if cell is not None]
    target = max(means, default=0.0) if higher else min(means, default=0.0)
    best = {i for i, cell in enumerate(cells) if cell is not None and math.isclose(cell.mean, target)}
    return best if len(best) < len(means) else set()


def _cell(stats: Stats | None, bold: bool, count: bool = False, interval: Interval | None = None,
          same: bool = False) -> str:  # fmt: skip
    if stats is None:
        return ""
    text = f"**{stats.text(count, interval)}**" if bold else stats.text(count, interval)
    return f"{text} {SAME_AS_REFERENCE}" if same else text


def experiment_table(
    rows: list[dict[str, Any]], metrics: list[str], statistics: SectionStatistics | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, lines): one line per experiment, the varying settings, the seed count and each metric
    (with its interval and the mark of no significant difference when `statistics` has them)."""
    settings = varying_settings(rows)
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_experiment.setdefault(row["experiment"], []).append(row)
    order = sorted(
        by_experiment,
        key=lambda name: ([sort_key(by_experiment[name][0]["settings"].get(key)) for key in settings], name),
    )
    columns = {m: [Stats.of([r["metrics"].get(m) for r in by_experiment[name]]) for name in order] for m in metrics}
    best = {metric: best_lines(cells, higher_is_better(metric)) for metric, cells in columns.items()}
    selected = any(row.get("selection") for row in rows)
    measured = any(row.get("tokens_per_second") is not None for row in rows)
    costed = any(row.get("trainable_parameters") is not None for row in rows)
    lines = []
    for index, name in enumerate(order):
        first = by_experiment[name][0]["settings"]
        folders = [row["folder"] for row in by_experiment[name]]
        cells = []
        for metric in metrics:
            stats = columns[metric][index]
            interval = statistics.cell_interval(folders, metric, stats) if statistics else None
            comparison = statistics.comparison(name, metric) if statistics else None
            same = comparison is not None and not comparison.significant
            cells.append(_cell(stats, index in best[metric], interval=interval, same=same))
        lines.append(
            [name, *(setting_text(first.get(key)) for key in settings), str(len(folders)), *cells]
            + (selection_cells(by_experiment[name]) if selected else [])
            + (training_cells(by_experiment[name]) if measured else [])
            + (adapter_cells(by_experiment[name]) if costed else [])
        )
    header = ["experiment", *settings, "n", *metrics]
    extra = (
        (list(SELECTION_COLUMNS) if selected else [])
        + (list(TRAINING_COLUMNS) if measured else [])
        + (list(ADAPTER_COLUMNS) if costed else [])
    )
    return header + extra, lines


# Columns of the experiment table when runs recorded their adapter's cost (results.json fields).
ADAPTER_COLUMNS = ("trainable params", "adapter MB", "s/step")


def adapter_cells(rows: list[dict[str, Any]]) -> list[str]:
    """Trainable parameters, the adapter's size on disk and seconds per training step (means over seeds)."""
    parameters = Stats.of([row.get("trainable_parameters") for row in rows])
    size = Stats.of([row["adapter_bytes"] / 1e6 if row.get("adapter_bytes") else None for row in rows])
    step = Stats.of([row.get("seconds_per_step") for row in rows])
    return [
        f"{parameters.mean:,.0f}" if parameters else NONE_TEXT,
        f"{size.mean:.2f}" if size else NONE_TEXT,
        f"{step.mean:.3f}" if step else NONE_TEXT,
    ]


# Columns of the experiment table when some run selected its adapter on validation during training.
SELECTION_COLUMNS = ("best step", "validation metric", "stopped early")


def selection_cells(rows: list[dict[str, Any]]) -> list[str]:
    """Best step and its validation metric (mean ± std over seeds), and how many seeds stopped early."""
    chosen = [row["selection"] for row in rows if row.get("selection")]
    if not chosen:
        return [NONE_TEXT] * len(SELECTION_COLUMNS)
    steps = Stats.of([selection.get("best_step") for selection in chosen])
    values = Stats.of([selection.get("best_value") for selection in chosen])
    names = sorted({str(selection.get("metric")) for selection in chosen})
    value = f"{values.text()} ({', '.join(names)})" if values else NONE_TEXT
    step = f"{steps.mean:.4g}" + (f" ± {steps.std:.1f}" if steps.std is not None else "") if steps else NONE_TEXT
    stopped = sum(bool(selection.get("stopped_early")) for selection in chosen)
    return [step, value, f"{stopped}/{len(chosen)}"]


# Columns of the experiment table when some run recorded its training throughput (sft.training.batching).
TRAINING_COLUMNS = ("train tokens/s", "padding", "batching")


def training_cells(rows: list[dict[str, Any]]) -> list[str]:
    """Training tokens per second and the padding share (mean over seeds), and the batching used."""
    speed = Stats.of([row.get("tokens_per_second") for row in rows])
    padding = Stats.of([row.get("padding_share") for row in rows])
    used = sorted({str(row["batching"]) for row in rows if row.get("batching")})
    return [
        f"{speed.mean:.4g}" if speed else NONE_TEXT,
        f"{padding.mean:.1%}" if padding else NONE_TEXT,
        ", ".join(used) or NONE_TEXT,
    ]


# -- pivots --------------------------------------------------------------------------------------------


@dataclass
class Pivot:
    """One metric over rows x columns of settings; `cells[(row, col)]` pools every run that matches."""

    metric: str
    row_keys: list[str]
    col_keys: list[str]
    rows: list[tuple] = field(default_factory=list)  # distinct row values, in natural order
    cols: list[tuple] = field(default_factory=list)
    cells: dict[tuple[tuple, tuple], Stats | None] = field(default_factory=dict)  # None: only NaN values
    folders: dict[tuple[tuple, tuple], list[str]] = field(default_factory=dict)  # the runs of each cell
    pooled: list[str] = field(default_factory=list)  # settings that differ between runs of one cell


def resolve_key(key: str, available: Sequence[str], option: str) -> str:
    """A dotted setting key from what the user typed: exact, a section (`model` -> `model.name`) or a
    unique last part (`shots` -> `dataset.shots`)."""
    if key in available:
        return key
    if f"{key}.name" in available:
        return f"{key}.name"
    endings = [name for name in available if name.endswith(f".{key}")]
    if len(endings) == 1:
        return endings[0]
    candidates = [*available, *{name.split(".")[0] for name in available}]
    hint = f" (it matches {', '.join(endings)}; write one of them)" if endings else did_you_mean(key, candidates)
    raise ValueError(f"{option}: no run has the setting {key!r}{hint}")


def default_pivot_keys(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The default rows keep only the default keys that vary here (at least the model)."""
    varying = set(varying_settings(rows))
    row_keys = [key for key in DEFAULT_PIVOT_ROWS if key in varying] or [DEFAULT_PIVOT_ROWS[0]]
    return row_keys, list(DEFAULT_PIVOT_COLS)


def pivot(rows: list[dict[str, Any]], row_keys: list[str], col_keys: list[str], metric: str) -> Pivot:
    table = Pivot(metric, list(row_keys), list(col_keys))
    groups: dict[tuple[tuple, tuple], list[dict[str, Any]]] = {}
    for row in rows:
        if not is_number(row["metrics"].get(metric)):
            continue
        r = tuple(row["settings"].get(key) for key in row_keys)
        c = tuple(row["settings"].get(key) for key in col_keys)
        groups.setdefault((_hashable(r), _hashable(c)), []).append(row)
    table.rows = sorted({r for r, _ in groups}, key=lambda values: [sort_key(v) for v in values])
    table.cols = sorted({c for _, c in groups}, key=lambda values: [sort_key(v) for v in values])
    pooled: dict[str, None] = {}
    for key, members in groups.items():
        table.cells[key] = Stats.of([member["metrics"][metric] for member in members])
        table.folders[key] = [member["folder"] for member in members]
        pooled.update(dict.fromkeys(k for k in varying_settings(members) if k not in (*row_keys, *col_keys)))
    table.pooled = list(pooled)
    return table


def _hashable(values: tuple) -> tuple:
    """Lists and dicts (e.g. target_modules) become JSON text so they can be dict keys."""
    return tuple(json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v for v in values)


def pivot_table(table: Pivot, statistics: SectionStatistics | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, lines) with the best mean of each column in bold, the run count and (with `statistics`)
    the interval in each cell."""
    columns = [[table.cells.get((r, c)) for r in table.rows] for c in table.cols]
    best = [best_lines(cells, higher_is_better(table.metric)) for cells in columns]
    header = [*table.row_keys, *(column_label(table.col_keys, c) for c in table.cols)]

    def interval(r: tuple, c: tuple) -> Interval | None:
        if statistics is None:
            return None
        return statistics.cell_interval(table.folders.get((r, c), []), table.metric, table.cells.get((r, c)))

    lines = [
        [*(setting_text(v) for v in r)]
        + [
            _cell(cells[i], i in top, count=True, interval=interval(r, c))
            for cells, top, c in zip(columns, best, table.cols)
        ]
        for i, r in enumerate(table.rows)
    ]
    return header, lines


def column_label(keys: list[str], values: tuple) -> str:
    """`shots=8` for one key; `shots=8, icl_examples=1` for several (the last part of each key)."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={setting_text(value)}" for key, value in zip(keys, values))
