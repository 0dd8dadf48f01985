"""The Markdown report: a summary, the settings a user set that are constant across the grid, a section
per dataset and task type (table, pivot, plot), then per-experiment plots, failed and missing runs and
unreadable files. It holds no timestamp or absolute path, so the same result files always give the
same Markdown."""

from __future__ import annotations

import math
from typing import Any

from tabulate import tabulate

from sft.config.parsing import differs_from_default
from sft.evaluation.metrics import higher_is_better
from sft.report.collect import Collected, is_number
from sft.report.plots import Drawn
from sft.report.sections import Section
from sft.report.statistics import SectionStatistics, Statistics
from sft.report.tables import (
    NONE_TEXT,
    SAME_AS_REFERENCE,
    constant_settings,
    experiment_table,
    format_number,
    pivot_table,
    setting_text,
)

FAILURE_LINES = 5
NONE = "none"


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
        "runs_skipped": 0,  # kept in schema version 2; the runner writes no skipped state
        "runs_missing": len(collected.missing),
        "experiments_done": len({row["experiment"] for row in rows}),
        "datasets": sorted({row["dataset"] for row in rows}),
        "models": sorted({str(row["model"]) for row in rows}),
        "compute_seconds": done,  # a reused adapter's training is in the run that trained it only
        "failed_compute_seconds": failed,
        "trainings": sum(row.get("adapter_source") == "trained" for row in rows),
        "adapters_reused": sum(row.get("adapter_source") == "reused" for row in rows),
    }


def _table(header: list[str], lines: list[list[str]]) -> str:
    return tabulate(lines, headers=header, tablefmt="github", disable_numparse=True)


def _summary_lines(facts: dict[str, Any], collected: Collected) -> list[str]:
    lines = [
        f"- Runs: {facts['runs_done']} done ({facts['experiments_done']} experiment(s)), {facts['runs_failed']} "
        f"failed, {facts['runs_missing']} missing",
        f"- Datasets: {', '.join(facts['datasets']) or NONE}",
        f"- Models: {', '.join(facts['models']) or NONE}",
        f"- Compute time: {duration_text(facts['compute_seconds'])} in finished runs"
        + (f", {duration_text(facts['failed_compute_seconds'])} in failed runs" if collected.failures else ""),
    ]
    if facts["adapters_reused"]:
        lines.append(
            f"- Trainings: {facts['trainings']} in finished runs; {facts['adapters_reused']} run(s) reused a "
            "shared adapter (its training time counted once, in the run that trained it)"
        )
    if collected.problems:
        lines.append(f"- Unreadable files: {len(collected.problems)} (listed at the end)")
    return lines


def _constant_lines(rows: list[dict[str, Any]]) -> list[str]:
    # settings at their schema default are what every run has unless told otherwise: not worth a line
    constant = {key: found for key, found in constant_settings(rows).items() if differs_from_default(key, found[0])}
    if not constant:
        return []
    table = [
        [key, setting_text(value), "all" if count == len(rows) else f"{count} of {len(rows)}"]
        for key, (value, count) in constant.items()
    ]
    return [
        "",
        f"<details><summary>Settings constant across the grid, defaults left out ({len(constant)})</summary>",
        "",
        _table(["setting", "value", "runs"], table),
        "",
        "</details>",
    ]


def _interval_text(statistics: Statistics | None, found: SectionStatistics | None) -> str:
    """What the brackets of a table's cells are, and what the mark means."""
    if statistics is None or found is None:
        return ""
    level = f"{statistics.level:.0%}"
    text = (f" [{level} interval: for one seed Wilson's for accuracy-like metrics, else a bootstrap over test "
            f"examples ({statistics.method}, {statistics.resamples} resamples); for several seeds a t-interval "
            "counting both seeds and test examples]")  # fmt: skip
    if found.comparisons:
        against = "the baseline" if any(role == "baseline" for _, role in found.references.values()) else "the best"
        text += (f"; {SAME_AS_REFERENCE}: not significantly different from {against} "
                 f"(paired test, Holm-adjusted p ≥ {statistics.alpha:g})")  # fmt: skip
    return text


def _p_text(p: float) -> str:
    return "< 0.0001" if p < 0.0001 else f"{p:.4f}"


def _comparison_lines(statistics: Statistics, found: SectionStatistics) -> list[str]:
    if not found.comparisons and not found.notes:
        return []
    lines = ["", "### Paired comparisons", ""]
    if found.comparisons:
        variant = "mid-p" if statistics.mcnemar == "mid-p" else "exact"
        lines += [
            f"Each experiment against the reference on the same test examples, paired by seed and example. One "
            f"seed: McNemar's test ({variant}; accuracy-like metrics) or a paired permutation test "
            f"({statistics.resamples} swaps), the difference with its {statistics.level:.0%} paired bootstrap "
            "interval. Several seeds: the mean of the per-seed differences, its t-interval and t-test counting "
            "seed-to-seed and test-example variance (seeds×examples t). p adjusted by Holm over each metric's "
            "comparisons; detectable: the smallest difference this design finds at 80% power.",
            "",
        ]
        table = [
            [c.metric, c.experiment, f"{c.reference} ({c.role})", c.test, ",".join(str(s) for s in c.seeds),
             f"{format_number(c.difference, like=c.high)} [{format_number(c.low, like=c.high)}, "
             f"{format_number(c.high, like=c.high)}]",
             _p_text(c.p_value), _p_text(c.p_holm), "yes" if c.significant else "no",
             format_number(c.detectable, like=c.high) if math.isfinite(c.detectable) else NONE_TEXT]
            for c in found.comparisons
        ]  # fmt: skip
        header = ["metric", "experiment", "reference", "test", "seeds", "difference", "p", "p (Holm)", "significant",
                  "detectable"]  # fmt: skip
        lines.append(_table(header, table))
        lines += _power_lines(statistics, found)
    if found.notes:
        lines += ["", *(f"- {note}" for note in found.notes)]
    return lines


def _power_lines(statistics: Statistics, found: SectionStatistics) -> list[str]:
    """The comparisons whose difference is too small for their design to find: each with the seeds or
    test examples that would find it."""
    missed = [c for c in found.comparisons if c.underpowered]
    if not missed:
        return []
    lines = ["", f"Power: {len(missed)} of {len(found.comparisons)} differences are not significant and smaller than "
             "this design detects at 80% power; a larger design may find them:"]  # fmt: skip
    for c in missed:
        seeds = "; ".join(
            [
                *([f"{c.seeds_needed} seeds at these test examples"] if c.seeds_needed else []),
                *([f"{c.examples_needed} test examples at {len(c.seeds)} seed(s)"] if c.examples_needed else []),
            ]
        )
        text = f"- {c.metric}, {c.experiment} against {c.reference}: {format_number(abs(c.difference), like=c.high)} < "
        lines.append(
            text
            + f"{format_number(c.detectable, like=c.high)} detectable"
            + (f"; needs about {seeds}" if seeds else "")
        )
    return lines


def _variance_lines(section: Section, found: SectionStatistics | None) -> list[str]:
    """Per experiment of several seeds, on the pivot metric: how much of its mean's variance comes from
    the seeds and how much from the test examples, so a reader knows which to add."""
    metric = section.pivot.metric if section.pivot else (section.metrics[0] if section.metrics else None)
    if found is None or metric is None:
        return []
    table = []
    for name, metrics in found.variance.items():
        components = metrics.get(metric)
        shares = components.shares() if components else None
        if components is None or shares is None:
            continue
        advice = "seeds" if shares[0] > shares[1] else "test examples"
        table.append([name, str(components.seeds), str(components.examples),
                      format_number(components.standard_error, like=components.mean), f"{shares[0]:.0%}",
                      f"{shares[1]:.0%}", advice])  # fmt: skip
    if not table:
        return []
    header = ["experiment", "seeds", "test examples", "standard error", "from seeds", "from test examples", "add"]
    return ["", f"### Where the variance of {metric} comes from", "",
            "Share of the variance of each mean over seeds due to seed-to-seed differences (shots drawn, training) "
            "and to the test examples scored; more of the larger one narrows the interval most.", "",
            _table(header, table)]  # fmt: skip


def _section_lines(section: Section, drawn: Drawn, statistics: Statistics | None) -> list[str]:
    key = (section.dataset, section.task_type)
    found = statistics.of(section) if statistics else None
    lower = [metric for metric in section.metrics if not higher_is_better(metric)]
    direction = f"; lower is better for {', '.join(lower)}" if lower else ""
    lines = ["", f"## {section.title}", ""]
    intervals = _interval_text(statistics, found)
    lines += [f"Mean ± standard deviation over seeds (n = seeds){intervals}; best per column in bold{direction}.", ""]
    lines.append(_table(*experiment_table(section.rows, section.metrics, found)))
    if statistics is not None and found is not None:
        lines += _comparison_lines(statistics, found)
        lines += _variance_lines(section, found)
    if key in drawn.forests:
        lines += ["", f"![{section.pivot.metric if section.pivot else ''} with intervals]({drawn.forests[key]})"]
    table = section.pivot
    if table is None:
        return [*lines, "", section.note]
    lines += ["", f"### {table.metric} by {' × '.join(table.row_keys)} and {' × '.join(table.col_keys)}", ""]
    brackets = f" [{statistics.level:.0%} interval]" if found is not None and statistics is not None else ""
    lines += [f"Mean ± standard deviation{brackets} (runs) in each cell; best per column in bold.", ""]
    lines.append(_table(*pivot_table(table, found)))
    if table.pooled:
        lines += ["", f"Cells pool runs that differ in {', '.join(table.pooled)}; add them to --rows or --cols."]
    plot = drawn.sections.get(key)
    if plot:
        lines += ["", f"![{table.metric} against {', '.join(table.col_keys)}]({plot})"]
    return lines


def threshold_source_text(source: Any) -> str:
    """Where a run's multilabel thresholds came from, as results.json records it."""
    if source == "fixed":
        return "fixed (inference.thresholds)"
    if not isinstance(source, dict):
        return "not recorded"
    picked = "" if source.get("chosen_by") == "config" else ", picked by its name"
    return f"split {source.get('split')!r}: {source.get('examples')} of {source.get('split_examples')} examples{picked}"


def _threshold_text(thresholds: dict[str, Any]) -> str:
    values = set(thresholds.values())
    if len(values) == 1:
        return f"{setting_text(next(iter(values)))} (every label)"
    return ", ".join(f"{label} {setting_text(value)}" for label, value in thresholds.items())


def _threshold_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Multilabel runs: the thresholds that cut label sets, next to what they were tuned on."""
    table = [
        [row["experiment"], setting_text(row["seed"]), _threshold_text(row["thresholds"]),
         threshold_source_text(row.get("threshold_source"))]
        for row in rows
        if isinstance(row.get("thresholds"), dict) and row["thresholds"]
    ]  # fmt: skip
    if not table:
        return []
    return ["", "## Multilabel thresholds", "", _table(["experiment", "seed", "thresholds", "tuned on"], table)]


def _run_lines(collected: Collected, per_experiment: dict[str, dict]) -> list[str]:
    lines: list[str] = []
    if per_experiment:
        lines += ["", "## Per-experiment plots"]
        for experiment, plots in per_experiment.items():
            lines += ["", f"### {experiment}", "", " ".join(f"![{kind}]({path})" for kind, path in plots.items())]
    if collected.tensorboard:
        lines += ["", "## TensorBoard", ""]
        lines.append(
            f"The trainer's event files of {len(collected.tensorboard)} run(s) (`training.trainer_args.report_to`); "
            "`tensorboard --logdir` on this folder shows them side by side."
        )
        # relative to the report, which sits in the results folder; run folder names need no escaping in a link
        lines += ["", *(f"- [{path}]({path})" for path in collected.tensorboard)]
    if collected.wandb:
        lines += ["", "## W&B", ""]
        lines.append(
            f"{len(collected.wandb)} offline W&B run(s) of the trainer (`training.trainer_args.report_to`), grouped "
            "by this folder's name; `wandb sync <folder>` from this folder uploads one, `wandb sync */seed-*/wandb/"
            "offline-run-*` all of them."
        )
        lines += ["", *(f"- [{path}]({path})" for path in collected.wandb)]
    if collected.failures:
        table = [
            [f["experiment"], str(f["seed"]), f["state"], setting_text(f.get("reason") or None),
             setting_text(f.get("exit_code")), f["log"]]
            for f in collected.failures
        ]  # fmt: skip
        header = ["experiment", "seed", "state", "reason", "exit code", "log"]
        lines += ["", "## Failed runs", "", _table(header, table)]
        for failure in collected.failures:
            tail = [line for line in failure["log_tail"].splitlines() if line.strip()][-FAILURE_LINES:]
            lines += ["", f"{failure['experiment']} seed {failure['seed']}, last lines of its log:", "", "```text"]
            lines += [*(tail or ["(empty log)"]), "```"]
    if collected.missing:
        table = [[m["experiment"], setting_text(m["seed"]), m["state"]] for m in collected.missing]
        lines += ["", "## Missing runs", "", "Runs of the grid without a result yet.", ""]
        lines.append(_table(["experiment", "seed", "state"], table))
    if collected.problems:
        lines += ["", "## Unreadable files", "", *(f"- {problem}" for problem in collected.problems)]
    return lines


def markdown(collected: Collected, found: list[Section], drawn: Drawn, statistics: Statistics | None = None) -> str:
    lines = ["# Aggregated results", "", *_summary_lines(summary(collected), collected)]
    missed = sum(c.underpowered for s in (statistics.sections.values() if statistics else []) for c in s.comparisons)
    if missed:
        lines.append(
            f"- Power: {missed} difference(s) not significant but smaller than their design detects at "
            "80% power (listed under each table, with the seeds or test examples that would detect them)"
        )
    lines += _constant_lines(collected.rows)
    for section in found:
        lines += _section_lines(section, drawn, statistics)
    lines += _threshold_lines(collected.rows)
    lines += _run_lines(collected, drawn.experiments)
    return "\n".join(lines) + "\n"
