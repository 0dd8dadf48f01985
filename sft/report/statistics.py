"""Which differences in a report are real: intervals for every metric cell and paired comparisons
within each table, from the runs' predictions.jsonl.

Per run: the metrics of its table are recomputed from its predictions with the batched forms of the
metric functions the run used (`sft.evaluation.batched`); a recomputed value that does not match
results.json is named as a problem and gets no interval. A cell of one run shows Wilson's interval for
a proportion (accuracy, exact match) and the bootstrap interval over its test examples otherwise; a
cell of several seeds (or a pivot cell pooling several runs) the interval of their mean with both
seeds and test examples as sources of variance (`sft.report.design`), with the seeds' variance
components kept per experiment.

Per table and metric: every experiment against the reference (the best mean, or `--baseline`) on the
seeds both ran and on the same test examples (equal `test_hash`, or for older results the same hash
computed from the predictions), with Holm's correction over the table's comparisons of that metric:
with one seed McNemar's test (exact or mid-p) or a paired permutation test, with several the
t-test of the seeds x examples design; each with the smallest difference it could detect at 80% power.
A run without predictions.jsonl has no bootstrap interval and no comparison; nothing else changes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sft.config import EvaluationConfig
from sft.evaluation.batched import Sufficient, sufficient_statistics
from sft.evaluation.metrics import higher_is_better
from sft.registry import did_you_mean
from sft.report.cache import CachedRun, Resampled, cache_key, load, prune, save
from sft.report.collect import read_row
from sft.report.comparisons import Comparison, holm, mcnemar_exact, paired_difference, permutation_p
from sft.report.design import (
    MCNEMAR,
    Components,
    components,
    detectable,
    effective_examples,
    interval,
    mcnemar_mid_p,
    needed,
    t_test,
    wilson,
)
from sft.report.intervals import METHODS, Interval, Resampler, bootstrap_interval, leave_one_out, t_interval
from sft.report.sections import ReportOptions, Section, sections
from sft.report.tables import Stats
from sft.results.files import read_jsonl
from sft.results.fingerprint import hash_test_inputs
from sft.tasks import TASKS
from sft.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStatistics:
    """One run's per-example statistics and bootstrap intervals."""

    experiment: str
    seed: Any
    test_hash: str
    sufficient: dict[str, Sufficient]
    intervals: dict[str, Interval]
    cache_key: str = ""  # its entry in the report's cache (`sft.report.cache`)
    clusters: int | None = None  # clusters its test examples form; None: independent examples
    values: dict[str, float] = field(default_factory=dict)  # each usable metric as results.json has it

    @property
    def examples(self) -> int:
        return next(iter(self.sufficient.values())).features.shape[0] if self.sufficient else 0

    @property
    def units(self) -> int:
        """What the bootstrap resamples: the clusters, or the examples."""
        return self.clusters or self.examples


@dataclass(frozen=True)
class SectionStatistics:
    """The intervals and comparisons of one dataset and task type."""

    dataset: str
    task_type: str
    level: float
    runs: dict[str, RunStatistics] = field(default_factory=dict)  # by run folder
    references: dict[str, tuple[str, str]] = field(default_factory=dict)  # metric -> (experiment, role)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    experiments: dict[str, dict[str, Interval]] = field(default_factory=dict)  # what each table cell shows
    cells: dict[tuple[tuple[str, ...], str], Interval] = field(default_factory=dict)  # (folders, metric)
    variance: dict[str, dict[str, Components]] = field(default_factory=dict)  # experiment -> metric (>= 2 seeds)

    def cell_interval(self, folders: list[str], metric: str, stats: Stats | None) -> Interval | None:
        """A table cell's interval (`design_interval`); without the runs' statistics, the t-interval of
        several runs' values."""
        if stats is None:
            return None
        found = self.cells.get((tuple(sorted(folders)), metric))
        if found is not None:
            return found
        if stats.n == 1 and len(folders) == 1:
            run = self.runs.get(folders[0])
            return run.intervals.get(metric) if run else None
        return t_interval(stats.mean, stats.std, stats.n, self.level)

    def comparison(self, experiment: str, metric: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.experiment == experiment and c.metric == metric), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "task_type": self.task_type,
            "run_intervals": {
                folder: {metric: interval.as_dict() for metric, interval in run.intervals.items()}
                for folder, run in self.runs.items()
            },
            "experiment_intervals": {
                name: {metric: interval.as_dict() for metric, interval in intervals.items()}
                for name, intervals in self.experiments.items()
            },
            "references": {metric: {"experiment": e, "role": role} for metric, (e, role) in self.references.items()},
            "comparisons": [comparison.as_dict() for comparison in self.comparisons],
            "variance_components": {
                name: {metric: _components_dict(found) for metric, found in metrics.items()}
                for name, metrics in self.variance.items()
            },
            "notes": self.notes,
        }


def _components_dict(found: Components) -> dict[str, Any]:
    shares = found.shares()
    return {
        "seeds": found.seeds, "examples": found.examples, "units": found.units, "mean": found.mean,
        "standard_error": found.standard_error, "df": found.df, "seed_variance": found.seed,
        "shared_test_variance": found.shared, "within_variance": found.within,
        "share_seeds": shares[0] if shares else None, "share_test_examples": shares[1] if shares else None,
    }  # fmt: skip


@dataclass(frozen=True)
class Statistics:
    """Every section's statistics and the settings they were computed with."""

    level: float
    method: str
    resamples: int
    seed: int
    baseline: str | None
    sections: dict[tuple[str, str], SectionStatistics] = field(default_factory=dict)
    mcnemar: str = "exact"

    @property
    def alpha(self) -> float:
        return round(1 - self.level, 10)

    def of(self, section: Section) -> SectionStatistics | None:
        return self.sections.get((section.dataset, section.task_type))

    def as_dict(self) -> dict[str, Any]:
        return {
            "confidence_level": self.level,
            "interval_method": self.method,
            "resamples": self.resamples,
            "seed": self.seed,
            "alpha": self.alpha,
            "baseline": self.baseline,
            "mcnemar": self.mcnemar,
            "sections": [section.as_dict() for section in self.sections.values()],
        }


def check_options(options: ReportOptions, rows: list[dict[str, Any]]) -> None:
    """Raise ValueError for statistics options that cannot work, before anything is written."""
    if options.resamples < 1:
        raise ValueError(f"--resamples: {options.resamples}; give at least 1 (1000 or more for a report)")
    if not 0 < options.level < 1:
        raise ValueError(f"--confidence: {options.level}; give a level between 0 and 1, e.g. 0.95")
    if options.mcnemar not in MCNEMAR:
        raise ValueError(f"--mcnemar: unknown variant {options.mcnemar!r}; choose from {', '.join(MCNEMAR)}")
    if options.method not in METHODS:
        raise ValueError(f"--interval-method: unknown method {options.method!r}; choose from {', '.join(METHODS)}")
    experiments = {row["experiment"] for row in rows}
    if options.baseline and rows and options.baseline not in experiments:
        hint = did_you_mean(options.baseline, experiments)
        raise ValueError(f"--baseline: no finished experiment is named {options.baseline!r}{hint}")


def compute_statistics(root: Path, found: list[Section], options: ReportOptions) -> Statistics:
    """Intervals and comparisons of every section (`found`), from the predictions under `root`."""
    resampler = Resampler(options.resamples, options.seed)
    sections: dict[tuple[str, str], SectionStatistics] = {}
    for section in found:
        metrics = _section_metrics(section)
        runs: dict[str, RunStatistics] = {}
        notes: list[str] = []
        for row in section.rows:
            run, run_notes = _run(root, row, metrics, resampler, options)
            notes += run_notes
            if run is not None:
                runs[row["folder"]] = run
        references, comparisons = {}, []
        for metric in metrics:
            reference, found_comparisons, found_notes = _compare(section, runs, metric, resampler, options)
            if reference:
                references[metric] = reference
            comparisons += found_comparisons
            notes += found_notes
        key = (section.dataset, section.task_type)
        without = sum(row["folder"] not in runs for row in section.rows)
        if without and runs:
            notes.append(f"{without} of {len(section.rows)} runs have no usable predictions.jsonl: no bootstrap "
                         "interval or comparison for them.")  # fmt: skip
        notes = list(dict.fromkeys(notes))  # a note about two runs holds for every metric
        found_section = SectionStatistics(*key, options.level, runs, references, comparisons, notes)
        cells, variance = _design_cells(section, runs, resampler, options.level)
        found_section = dataclasses.replace(found_section, cells=cells, variance=variance)
        sections[key] = dataclasses.replace(found_section, experiments=_experiment_intervals(section, found_section))
    prune(root, {run.cache_key for section in sections.values() for run in section.runs.values()})
    return Statistics(
        options.level, options.method, options.resamples, options.seed, options.baseline, sections, options.mcnemar
    )


def _groups(section: Section) -> list[tuple[str | None, list[str]]]:
    """Every table cell's runs: each experiment's (with its name), then each pivot cell's."""
    experiments: dict[str, list[str]] = {}
    for row in section.rows:
        experiments.setdefault(row["experiment"], []).append(row["folder"])
    cells = list(section.pivot.folders.values()) if section.pivot is not None else []
    return [*experiments.items(), *((None, folders) for folders in cells)]


def _design_cells(
    section: Section, runs: dict[str, RunStatistics], resampler: Resampler, level: float
) -> tuple[dict[tuple[tuple[str, ...], str], Interval], dict[str, dict[str, Components]]]:
    """The interval of every table cell whose runs all have statistics, and the variance components of
    every experiment of several seeds."""
    cells: dict[tuple[tuple[str, ...], str], Interval] = {}
    variance: dict[str, dict[str, Components]] = {}
    for name, folders in _groups(section):
        members = [runs.get(folder) for folder in folders]
        for metric in _section_metrics(section):
            if any(run is None or metric not in run.sufficient for run in members):
                continue
            found = design_interval([run for run in members if run is not None], metric, resampler, level)
            if found is None:
                continue
            cells[(tuple(sorted(folders)), metric)] = found[0]
            if found[1] is not None and name is not None:
                variance.setdefault(name, {})[metric] = found[1]
    return cells, variance


def design_interval(
    runs: list[RunStatistics], metric: str, resampler: Resampler, level: float
) -> tuple[Interval, Components | None] | None:
    """A cell's interval: one run: Wilson's for a proportion (at the effective number of examples when
    they are clustered), else its bootstrap interval; several: the interval of their mean over seeds and
    test examples (`sft.report.design`), with its variance components."""
    statistics = [run.sufficient[metric] for run in runs]
    resampled = np.vstack([resampler.values([statistic]) for statistic in statistics])
    values = np.array([run.values[metric] for run in runs])
    if len(runs) == 1:
        run = runs[0]
        if not statistics[0].binary:
            bootstrap = run.intervals.get(metric)
            return (bootstrap, None) if bootstrap is not None else None
        examples = float(run.examples)
        if run.clusters:
            spread = components(values, resampled, run.examples, run.units).variance
            examples = effective_examples(float(values[0]), run.examples, spread)
        low, high = wilson(float(values[0]) * examples, examples, level)
        return Interval(low, high, "wilson"), None
    hashes = [run.test_hash for run in runs]
    same = np.array([[a == b for b in hashes] for a in hashes])
    units = min(run.units for run in runs)
    found = components(values, resampled, min(run.examples for run in runs), units, same)
    bounds = (0.0, 1.0) if all(statistic.binary for statistic in statistics) else None
    low, high = interval(found, level, bounds)
    return Interval(low, high, "seeds+examples"), found


def _section_metrics(section: Section) -> list[str]:
    """The metrics a section shows (its table's and its pivot's): those that get intervals."""
    return list(dict.fromkeys([*section.metrics, *([section.pivot.metric] if section.pivot else [])]))


def prepare_run(root: Path, folder: str, options: ReportOptions | None = None) -> bool:
    """Compute and keep (`sft.report.cache`) the statistics of one finished run as the report will ask
    for them, so the report at the end of a grid finds every run's ready: the runner calls this as
    each run finishes, while the others still run. True when they are kept; never raises (a run
    the report cannot use is named by the report itself)."""
    options = options or ReportOptions()
    try:
        row = read_row(root, folder)
        metrics = _section_metrics(sections([row], options)[0])
        found, _ = _run(root, row, metrics, Resampler(options.resamples, options.seed), options)
    except Exception as error:  # the report recomputes what is not kept here
        log.warning("statistics of %s not prepared: %s", folder, error)
        return False
    return found is not None


def _experiment_intervals(section: Section, found: SectionStatistics) -> dict[str, dict[str, Interval]]:
    """experiment -> metric -> the interval its table cell shows (bootstrap for one seed, t for several)."""
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for row in section.rows:
        by_experiment.setdefault(row["experiment"], []).append(row)
    intervals: dict[str, dict[str, Interval]] = {}
    for name, members in by_experiment.items():
        folders = [member["folder"] for member in members]
        for metric in section.metrics:
            stats = Stats.of([member["metrics"].get(metric) for member in members])
            interval = found.cell_interval(folders, metric, stats)
            if interval is not None:
                intervals.setdefault(name, {})[metric] = interval
    return intervals


def _evaluation_config(settings: dict[str, Any]) -> EvaluationConfig:
    """The run's evaluation settings (ece_bins, bleu_tokenize, ...) as its results.json recorded them."""
    values = {
        key.removeprefix("evaluation."): value for key, value in settings.items() if key.startswith("evaluation.")
    }
    try:
        return EvaluationConfig.model_validate(values)
    except ValueError:  # settings of another version: the schema's defaults
        return EvaluationConfig()


def _run(
    root: Path,
    row: dict[str, Any],
    metrics: list[str],
    resampler: Resampler,
    options: ReportOptions,
) -> tuple[RunStatistics | None, list[str]]:
    """The run's per-example statistics and bootstrap intervals (None without usable predictions), and
    notes on what could not be used (an unreadable file is also named by the report's plots)."""
    path = f"{row['folder']}/predictions.jsonl"
    task = TASKS.get(row["task_type"])
    if task is None or not (root / path).is_file():
        return None, []
    settings = row["settings"]
    names = list(settings.get("evaluation.metrics") or task.default_metrics)
    evaluation = _evaluation_config(settings)
    parts = {
        "labels": row.get("labels"), "metrics": names, "asked": sorted(metrics), "test_hash": row.get("test_hash"),
        "input_columns": settings.get("prompting.input_columns"), "evaluation": evaluation.model_dump(mode="json"),
        "resamples": resampler.resamples, "seed": resampler.seed,
    }  # fmt: skip
    try:
        key = cache_key(root / path, parts)
        cached = load(root, key)
        if cached is None:
            cached = _statistics_of(root / path, row, task, names, evaluation, metrics, resampler)
            _remember(root, key, cached)
    except Exception as error:  # odd predictions of one run must not cost the report
        return None, [f"{path}: no intervals ({type(error).__name__}: {error})"]
    for item in cached.resampled:
        resampler.remember(item.features, item.sums, item.swapped)
    sufficient, test_hash, clusters = cached.sufficient, cached.test_hash, cached.clusters
    notes = []
    usable: dict[str, Sufficient] = {}
    for metric, statistic in sufficient.items():
        recorded = row["metrics"].get(metric)
        recomputed = float(statistic.finish(resampler.total(statistic.features))[0])  # value(), its sum kept
        if recorded is None or not math.isclose(recomputed, recorded, rel_tol=1e-6, abs_tol=1e-9):
            notes.append(f"{path}: {metric} recomputed from the predictions is {recomputed:.6g}, results.json "
                            f"says {recorded}; no interval or comparison for it")  # fmt: skip
            continue
        usable[metric] = statistic
    jackknives: dict[int, np.ndarray] = {}
    intervals = {}
    for metric, statistic in usable.items():
        jackknife = None
        if options.method == "bca":
            matrix = id(statistic.features)
            if matrix not in jackknives:
                jackknives[matrix] = leave_one_out(statistic.features)
            jackknife = statistic.finish(jackknives[matrix])
        resampled = resampler.values([statistic])
        low, high = bootstrap_interval(row["metrics"][metric], resampled, options.level, options.method, jackknife)
        intervals[metric] = Interval(low, high, "bootstrap")
    values = {metric: float(row["metrics"][metric]) for metric in usable}
    return RunStatistics(row["experiment"], row["seed"], test_hash, usable, intervals, key, clusters, values), notes


def _remember(root: Path, key: str, cached: CachedRun) -> None:
    """Keep the run's statistics for the next report; one that cannot be written is computed again then."""
    try:
        save(root, key, cached)
    except OSError as error:
        log.warning("report cache: %s not written (%s)", key, error)


def _statistics_of(
    path: Path, row: dict[str, Any], task: Task, names: list[str], evaluation: EvaluationConfig, metrics: list[str],
    resampler: Resampler,
) -> CachedRun:  # fmt: skip
    """Parse the run's predictions and resample every statistics matrix the table's metrics use."""
    predictions = read_jsonl(path)
    first = predictions[0] if predictions else {}
    labels = row.get("labels") or (
        list(first["probabilities"]) if isinstance(first.get("probabilities"), dict) else None
    )
    sufficient = sufficient_statistics(task.metric_inputs(predictions, labels), names, evaluation, set(metrics))
    distinct = list({id(statistic.features): statistic.features for statistic in sufficient.values()}.values())
    codes = cluster_codes(predictions, evaluation.cluster_column) if evaluation.cluster_column else None
    if codes is not None:  # whole clusters drawn and swapped: a resampler of this test set's own
        resampler = Resampler(resampler.resamples, resampler.seed, codes)
    resampled = [Resampled(features, resampler.sums(features), resampler.swapped(features)) for features in distinct]
    input_columns = row["settings"].get("prompting.input_columns") or []
    test_hash = row.get("test_hash") or hash_test_inputs(predictions, input_columns)
    return CachedRun(test_hash, sufficient, resampled, int(codes.max()) + 1 if codes is not None else None)


def cluster_codes(predictions: list[dict[str, Any]], column: str) -> np.ndarray:
    """Each example's cluster as 0..G-1 in order of first appearance; an example without the column is
    a cluster of its own (raises ValueError when no example has it: predictions of an older run)."""
    if not any(column in row for row in predictions):
        raise ValueError(f"evaluation.cluster_column {column!r} is in no row of predictions.jsonl")
    codes: dict[str, int] = {}
    found = []
    for index, row in enumerate(predictions):
        value = json.dumps(row[column], sort_keys=True, default=str) if column in row else f"\0{index}"
        found.append(codes.setdefault(value, len(codes)))
    return np.asarray(found, dtype=np.int64)


def _reference(section: Section, metric: str, options: ReportOptions) -> tuple[str | None, str]:
    """(experiment, "baseline" | "best"): the chosen baseline when this table has it, else the best mean."""
    names = list(dict.fromkeys(row["experiment"] for row in section.rows))
    if options.baseline in names:
        return options.baseline, "baseline"
    means = {
        name: Stats.of([r["metrics"].get(metric) for r in section.rows if r["experiment"] == name]) for name in names
    }
    scored = [(stats.mean, name) for name, stats in means.items() if stats is not None]
    if not scored:
        return None, "best"
    best = max(scored, key=lambda item: item[0]) if higher_is_better(metric) else min(scored, key=lambda item: item[0])
    return next(name for mean, name in scored if mean == best[0]), "best"


def _compare(
    section: Section, runs: dict[str, RunStatistics], metric: str, resampler: Resampler, options: ReportOptions
) -> tuple[tuple[str, str] | None, list[Comparison], list[str]]:
    """((reference, role) or None, the Holm-corrected comparisons of `metric`, notes)."""
    reference, role = _reference(section, metric, options)
    notes = []
    if options.baseline and role == "best":
        notes.append(f"The baseline {options.baseline} is not in this table; compared with the best instead.")
    if reference is None:
        return None, [], notes
    by_experiment: dict[str, dict[Any, RunStatistics]] = {}
    for run in runs.values():
        if metric in run.sufficient:
            by_experiment.setdefault(run.experiment, {})[run.seed] = run
    references = by_experiment.get(reference, {})
    others = [name for name in dict.fromkeys(row["experiment"] for row in section.rows) if name != reference]
    if not references:
        if others and by_experiment:
            notes.append(f"{metric}: the {role}, {reference}, has no usable predictions.jsonl; no comparisons.")
        return None, [], notes
    comparisons = []
    for name in others:
        found = by_experiment.get(name, {})
        shared = [seed for seed in found if seed in references]
        same = [seed for seed in shared if found[seed].test_hash == references[seed].test_hash]
        layouts = {run.sufficient[metric].layout for run in [*found.values(), *references.values()]}
        if len(same) < len(shared):
            differ = ", ".join(str(seed) for seed in shared if seed not in same)
            notes.append(f"{name} and {reference} scored different test examples (seed {differ}); "
                         "not compared on those seeds.")  # fmt: skip
        if found and not shared:
            notes.append(f"{name} has no seed in common with {reference}; not compared.")
        elif same and len(layouts) > 1:
            notes.append(f"{metric}: {name} and {reference} scored different label sets; not compared.")
        if not same or len(layouts) > 1:
            continue
        comparisons.append(_paired(metric, name, reference, role, found, references, same, resampler, options))
    adjusted = holm([c.p_value for c in comparisons])
    alpha = 1 - options.level
    corrected = [dataclasses.replace(c, p_holm=p, significant=p < alpha) for c, p in zip(comparisons, adjusted)]
    return (reference, role), corrected, notes


def _paired(
    metric: str,
    name: str,
    reference: str,
    role: str,
    runs: dict[Any, RunStatistics],
    references: dict[Any, RunStatistics],
    seeds: list[Any],
    resampler: Resampler,
    options: ReportOptions,
) -> Comparison:
    """One experiment against the reference on the seeds both ran, paired by seed and test example. One
    seed: McNemar's test (exact or mid-p) for an accuracy-like metric on independent examples, else a
    paired permutation test, and the paired bootstrap interval. Several: the mean of the per-seed
    differences with the t-interval and t-test of the seeds x examples design (`sft.report.design`).
    Either way the smallest difference the design detects at 80% power, and what would detect this one."""
    statistic = runs[seeds[0]].sufficient[metric]
    parts = [runs[seed].sufficient[metric] for seed in seeds]
    reference_parts = [references[seed].sufficient[metric] for seed in seeds]
    differences = np.array([runs[seed].values[metric] - references[seed].values[metric] for seed in seeds])
    resampled = np.vstack([resampler.values([a]) - resampler.values([b]) for a, b in zip(parts, reference_parts)])
    hashes = [runs[seed].test_hash for seed in seeds]
    same = np.array([[a == b for b in hashes] for a in hashes])
    units = min(min(runs[seed].units, references[seed].units) for seed in seeds)
    examples = parts[0].features.shape[0]
    design = components(differences, resampled, examples, units, same)
    discordant = None
    clustered = any(runs[seed].clusters for seed in seeds)
    if len(seeds) > 1:
        test = "seeds×examples t"
        difference = float(differences.mean())
        low, high = interval(design, options.level)
        p_value = t_test(design)
    else:
        difference, low, high = paired_difference(parts, reference_parts, resampler, options.level, options.method)
        if statistic.binary and not clustered:
            reference_correct = reference_parts[0].correct()
            p_value, only_experiment, only_reference = mcnemar_exact(statistic.correct(), reference_correct)
            if options.mcnemar == "mid-p":
                p_value = mcnemar_mid_p(only_experiment, only_reference)
            test = "mcnemar" if options.mcnemar == "exact" else "mcnemar mid-p"
            discordant = (only_experiment, only_reference)
        else:
            test = "permutation"
            p_value = permutation_p(parts, reference_parts, resampler)
    alpha = 1 - options.level
    plan = needed(design, difference, alpha)
    return Comparison(
        metric, name, reference, role, test, tuple(seeds), examples, difference, low, high, p_value,
        discordant=discordant, detectable=detectable(design, alpha), seeds_needed=plan.seeds,
        examples_needed=plan.examples, df=design.df,
    )  # fmt: skip


@dataclass(frozen=True)
class ForestRow:
    """One experiment of a forest plot: its mean, interval and how it compares with the reference."""

    experiment: str
    mean: float
    interval: Interval | None
    status: str  # "best" / "baseline" (the reference), "same" (not significantly different), "different", ""


def forest_rows(section: Section, found: SectionStatistics, metric: str) -> list[ForestRow]:
    """The experiments of a section on `metric`, best first."""
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for row in section.rows:
        by_experiment.setdefault(row["experiment"], []).append(row)
    reference, role = found.references.get(metric, (None, ""))
    rows = []
    for name, members in by_experiment.items():
        stats = Stats.of([member["metrics"].get(metric) for member in members])
        if stats is None:
            continue
        comparison = found.comparison(name, metric)
        status = role if name == reference else ""
        if comparison is not None:
            status = "different" if comparison.significant else "same"
        interval = found.cell_interval([member["folder"] for member in members], metric, stats)
        rows.append(ForestRow(name, stats.mean, interval, status))
    return sorted(rows, key=lambda row: row.mean, reverse=higher_is_better(metric))
