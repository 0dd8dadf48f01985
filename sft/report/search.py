"""The report's section of each searched experiment (`sft.search`), rebuilt from `RESULTS/_search/` alone: the
values chosen on validation, the trial table (values, state, validation metric, the step a pruned trial
stopped at), an optimization-history plot and a parameter-importance plot, then the chosen configuration's
test result with its interval (the experiment's row in the tables above)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sft.report.intervals import Interval, t_interval
from sft.report.plots import _figure, _save
from sft.report.statistics import Statistics
from sft.results.records import RecordError
from sft.results.states import RunState
from sft.search.study import INTERRUPTED_ATTR, SEARCH_FOLDER, SearchRecord, storage
from sft.tasks import TASKS


def _study(folder: Path, record: SearchRecord) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=record.study, storage=storage(folder, record.storage))


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if not isinstance(value, str) else value


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial of the study: number, state, values, validation value, pruned step, seconds, note."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        value = trial.value
        if value is None and trial.intermediate_values:  # a pruned trial: its last reported value
            value = trial.intermediate_values[max(trial.intermediate_values)]
        note = []
        if attrs.get(INTERRUPTED_ATTR):
            note.append("interrupted (retried)")
        if "retry_of" in attrs:
            note.append(f"retry of {attrs['retry_of']}")
        if attrs.get("failure"):
            note.append(str(attrs["failure"])[:80])
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "params": dict(trial.params),
                "value": value,
                "pruned_step": attrs.get("pruned_step"),
                "train_seconds": attrs.get("train_seconds"),
                "note": "; ".join(note),
            }
        )
    return rows


def space_text(study: Any) -> str:
    """The searched space as the trials' distributions say (the report's tables leave `search.space` out)."""
    found: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        found.update(trial.distributions)
    parts = []
    for key, distribution in found.items():
        if hasattr(distribution, "choices"):
            parts.append(f"`{key}` one of {', '.join(_value(choice) for choice in distribution.choices)}")
        else:
            scale = " (log scale)" if getattr(distribution, "log", False) else ""
            step = f", step {_value(distribution.step)}" if getattr(distribution, "step", None) not in (None, 1) else ""
            parts.append(f"`{key}` from {_value(distribution.low)} to {_value(distribution.high)}{scale}{step}")
    return f"Space: {'; '.join(parts)}." if parts else "Space: no trial has been asked yet."


def history_plot(path: Path, rows: list[dict[str, Any]], metric: str, maximize: bool, title: str) -> Path:
    """Each trial's validation value by trial number (pruned ones at their last report), and the best so far."""
    figure = _figure()
    axes = figure.subplots()
    best, line = None, []
    for state, marker in (("complete", "o"), ("pruned", "x")):
        points = [(row["number"], row["value"]) for row in rows if row["state"] == state and row["value"] is not None]
        if points:
            axes.scatter(*zip(*points), marker=marker, label=state)
    for row in sorted(rows, key=lambda row: row["number"]):
        if row["state"] == "complete" and row["value"] is not None:
            better = best is None or (row["value"] > best if maximize else row["value"] < best)
            best = row["value"] if better else best
        if best is not None:
            line.append((row["number"], best))
    if line:
        axes.step(*zip(*line), where="post", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(f"validation {metric}")
    axes.set_title(title)
    axes.legend()
    return _save(figure, path)


def importance_plot(path: Path, importances: dict[str, float], title: str) -> Path:
    """Optuna's parameter importances (fANOVA over the completed trials) as horizontal bars."""
    figure = _figure()
    axes = figure.subplots()
    names = list(importances)[::-1]
    axes.barh(names, [importances[name] for name in names])
    axes.set_xlabel("importance for the validation value")
    axes.set_title(title)
    return _save(figure, path)


def _importances(study: Any) -> dict[str, float] | str:
    import optuna

    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError) as error:
        return str(error)


def _test_text(name: str, rows: list[dict[str, Any]], statistics: Statistics | None) -> str:
    done = [row for row in rows if row["experiment"] == name and row.get("status") == RunState.DONE.value]
    if not done:
        return "No test result yet: the chosen configuration's runs have not finished."
    task_type = done[0]["task_type"]
    metric = TASKS[task_type].headline_metric if task_type in TASKS else None
    values = [row["metrics"][metric] for row in done if isinstance(row["metrics"].get(metric), (int, float))]
    if metric is None or not values:
        return "The chosen configuration's runs report no headline metric."
    mean = sum(values) / len(values)
    interval: Interval | None = None
    for found in statistics.sections.values() if statistics else []:
        interval = interval or found.experiments.get(name, {}).get(metric)
    if interval is None and len(values) > 1:
        std = math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))
        interval = t_interval(mean, std, len(values), 0.95)
    shown = f" [{interval.low:.4f}, {interval.high:.4f}] ({interval.kind})" if interval else ""
    return f"Test {metric} of the chosen configuration: {mean:.4f}{shown} over {len(values)} seed(s)."


def search_lines(root: Path, rows: list[dict[str, Any]], statistics: Statistics | None = None) -> list[str]:
    """The Markdown of every search under `root` (nothing when none), with its plots drawn beside the study."""
    lines: list[str] = []
    for record_path in sorted((root / SEARCH_FOLDER).glob(f"*/{SearchRecord.FILE}")):
        folder = record_path.parent
        try:
            record = SearchRecord.read(record_path)
            study = _study(folder, record)
        except (OSError, RecordError, KeyError) as error:
            lines += ["", f"## Search: {folder.name}", "", f"Unreadable search: {error}"]
            continue
        lines += _one_search(root, folder, record, study, rows, statistics)
    return lines


def _one_search(
    root: Path, folder: Path, record: SearchRecord, study: Any, rows: list[dict[str, Any]], statistics: Any
) -> list[str]:
    trials = trial_rows(study)
    finished = ("complete", "pruned", "fail")
    counted = [row for row in trials if row["state"] in finished and not row["note"].startswith("interrupted")]
    states = {state: sum(row["state"] == state for row in counted) for state in finished}
    lines = ["", f"## Search: {record.experiment}", ""]
    lines.append(
        f"{len(counted)} of {record.trials} trials finished ({states['complete']} complete, {states['pruned']} "
        f"pruned, {states['fail']} failed); sampler {record.sampler}, pruner {record.pruner}; compared on "
        f"validation {record.metric} ({record.direction}). Study `{record.study}` in "
        f"`{folder.relative_to(root).as_posix()}`."
    )
    lines += ["", space_text(study)]
    if record.chosen is not None:
        values = ", ".join(f"`{key}` = {_value(value)}" for key, value in record.chosen.items())
        lines += ["", f"Chosen (trial {record.best_trial}, validation {record.metric} {record.best_value:.4f}): "
                  f"{values}."]  # fmt: skip
    elif not record.finished:
        lines += ["", "The search has not finished: nothing is chosen yet."]
    keys = list(dict.fromkeys(key for row in trials for key in row["params"]))
    header = ["trial", "state", *keys, f"validation {record.metric}", "pruned at step", "train s", "note"]
    table = [
        [str(row["number"]), row["state"], *(_value(row["params"].get(key, "")) for key in keys),
         _value(row["value"]) if row["value"] is not None else "", str(row["pruned_step"] or ""),
         _value(row["train_seconds"]) if row["train_seconds"] is not None else "", row["note"]]
        for row in trials
    ]  # fmt: skip
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table]
    relative = folder.relative_to(root).as_posix()
    if any(row["value"] is not None for row in trials):
        history_plot(folder / "history.png", trials, record.metric, record.direction == "maximize",
                     f"{record.experiment}: optimization history")  # fmt: skip
        lines += ["", f"![optimization history]({relative}/history.png)"]
    importances = _importances(study) if states["complete"] > 1 else "fewer than two completed trials"
    if isinstance(importances, dict) and importances:
        importance_plot(folder / "importance.png", importances, f"{record.experiment}: parameter importance")
        lines += ["", f"![parameter importance]({relative}/importance.png)"]
    else:
        lines += ["", f"No parameter importance: {importances}."]
    lines += ["", _test_text(record.experiment, rows, statistics)]
    return lines
