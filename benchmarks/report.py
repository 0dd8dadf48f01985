"""What the report's statistics cost: `aggregate` of a 20-experiment grid with 1,400 test examples per
run, with statistics (bootstrap intervals for every table cell, paired tests against the best, Holm,
the forest plot) and without (`ReportOptions(statistics=False)`), measured alternately in one run.

Target: with statistics at most 1.5 times the time without (prepared). "With" is timed twice: with nothing
prepared (results of an older version: every predictions.jsonl is parsed and resampled), and with each
run's statistics prepared, as `run-experiments` prepares them when each run ends (`sft.report.cache`),
which is how the report at the end of a grid and every rebuild find them. Also times preparing one run,
and the bootstrap alone on 10,000 examples of a 28-label task (1,000 resamples), which should take
seconds.

The grid is synthetic: results folders as `sft.experiment.run` writes them (predictions.jsonl with
label probabilities, results.json with the metrics the classification task's metric functions give),
6 labels, accuracies between 0.55 and 0.85, shots 0/8/16/32 x five initializations.

    PYTHONPATH=. python benchmarks/report.py [--repeats 5] [--experiments 20] [--examples 1400] [--seeds 1]

With `--seeds 3` every experiment has three seeds on the same test examples, so the table cells and
comparisons take the seeds x examples design (`sft.report.design`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

LABELS = ["anger", "fear", "joy", "love", "sadness", "surprise"]


def build_grid(root: Path, experiments: int, examples: int, seeds: int = 1) -> Path:
    from sft.config import parse_config
    from sft.evaluation.metrics import compute_metrics
    from sft.results.files import atomic_write_jsonl
    from sft.results.fingerprint import hash_test_inputs
    from sft.results.layout import Run
    from sft.results.run_record import ResultsRecord, Timings
    from sft.tasks import task_for

    rng = np.random.default_rng(0)
    references = [LABELS[i] for i in rng.integers(0, len(LABELS), examples)]
    texts = [f"example text {i}" for i in range(examples)]
    for index, seed in ((index, seed) for index in range(experiments) for seed in range(1, seeds + 1)):
        shots = (0, 8, 16, 32)[index % 4]
        raw = {
            "dataset": {"path": "bench/emotion", "shots": shots},
            "model": {"name": "bench/model"},
            "prompting": {"instruction": "Classify.", "input_columns": ["text"], "output_column": "label"},
            "inference": {"icl_examples": index // 4},
        }
        config = parse_config(raw)
        task = task_for(config)
        right = rng.random(examples) < 0.55 + 0.3 * index / experiments
        logits = rng.normal(size=(examples, len(LABELS)))
        for row, (reference, correct) in enumerate(zip(references, right)):
            target = LABELS.index(reference) if correct else (LABELS.index(reference) + 1) % len(LABELS)
            logits[row, target] = logits[row].max() + rng.exponential()
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        rows = [
            {"text": text, "reference": reference, "prediction": LABELS[int(np.argmax(p))],
             "probabilities": dict(zip(LABELS, p.tolist()))}
            for text, reference, p in zip(texts, references, probabilities)
        ]  # fmt: skip
        metrics = compute_metrics(task.metric_inputs(rows, LABELS), task.default_metrics, config.evaluation)
        run = Run(f"experiment{index:02d}", seed, root)
        atomic_write_jsonl(run.folder / "predictions.jsonl", rows)
        ResultsRecord(
            experiment=run.name, seed=run.seed, config_hash=config.config_hash(), task_type="classification",
            metrics=metrics, n_test=examples, test_hash=hash_test_inputs(rows, ["text"]),
            n_shots=shots * len(LABELS), labels=LABELS, thresholds=None, threshold_source=None, training=None,
            training_key=None, adapter_source=None, adapter=None, calibration=None,
            timings=Timings(total_seconds=60.0), versions=None, finished_at="2026-01-01T00:00:00+00:00",
            config=config.resolved(),
        ).write(run.folder / ResultsRecord.FILE)  # fmt: skip
    return root


def forget_statistics(root: Path) -> None:
    """Remove the report's cache of run statistics (`sft.report.cache`), as for results nothing prepared,
    so the next report parses and resamples every predictions.jsonl."""
    from sft.report.cache import CACHE_FOLDER

    shutil.rmtree(root / CACHE_FOLDER, ignore_errors=True)


def time_aggregate(root: Path, with_statistics: bool, cold: bool = False) -> float:
    """One `aggregate` call in this process; `cold`: with nothing prepared."""
    from sft.report.aggregate import ReportOptions, aggregate

    if cold:
        forget_statistics(root)
    started = time.perf_counter()
    aggregate(root, ReportOptions(statistics=with_statistics))
    return time.perf_counter() - started


def time_command(root: Path, with_statistics: bool, cold: bool = False) -> float:
    """`python -m sft.cli aggregate` in a fresh process, as a user runs it: imports included."""
    command = [sys.executable, "-m", "sft.cli", "aggregate", str(root)]
    if cold:
        forget_statistics(root)
    started = time.perf_counter()
    subprocess.run(command if with_statistics else [*command, "--no-statistics"], check=True, capture_output=True)
    return time.perf_counter() - started


def time_prepare(root: Path) -> float:
    """The median time `prepare_run` takes for one run of the grid, from nothing prepared."""
    from sft.report.statistics import prepare_run
    from sft.results.layout import Run, run_folders

    forget_statistics(root)
    times = []
    for folder in run_folders(root):
        started = time.perf_counter()
        prepare_run(root, Run.from_folder(folder).relative)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_reading(root: Path) -> float:
    """Parsing every predictions.jsonl: the part of the statistics no computation can save."""
    from sft.results.files import read_jsonl
    from sft.results.layout import run_folders

    started = time.perf_counter()
    for folder in run_folders(root):
        read_jsonl(folder / "predictions.jsonl")
    return time.perf_counter() - started


def time_bootstrap(examples: int = 10_000, labels: int = 28, resamples: int = 1000) -> float:
    """Bootstrap intervals of accuracy and the F1 family on one large many-label run, from its inputs."""
    from sft.config import EvaluationConfig
    from sft.evaluation.batched import sufficient_statistics
    from sft.evaluation.metrics import MetricInputs
    from sft.report.intervals import Resampler, bootstrap_interval

    rng = np.random.default_rng(1)
    names = [f"label{i}" for i in range(labels)]
    references = [names[i] for i in rng.integers(0, labels, examples)]
    predictions = [r if rng.random() < 0.6 else names[rng.integers(0, labels)] for r in references]
    started = time.perf_counter()
    found = sufficient_statistics(MetricInputs(references, predictions, names), ["accuracy", "f1"], EvaluationConfig())
    resampler = Resampler(resamples, 0)
    for statistic in found.values():
        bootstrap_interval(statistic.value(), statistic.finish(resampler.sums(statistic.features)), 0.95, "percentile")
    return time.perf_counter() - started


KINDS = {
    "without": "without statistics",
    "cold": "with statistics, nothing prepared (every predictions.jsonl parsed and resampled)",
    "warm": "with statistics, run statistics prepared (as the runner does when each run ends)",
}


def print_timings(title: str, times: dict[str, list[float]]) -> dict[str, float]:
    """The table of one way of timing, its ratios to the time without statistics, and the medians."""
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    print(f"\n{title}:")
    table = [[KINDS[kind], f"{medians[kind]:.2f}", " ".join(f"{t:.2f}" for t in times[kind])] for kind in times]
    print(tabulate(table, headers=["", "median s", "runs s"], tablefmt="github"))
    for kind in ("cold", "warm"):
        print(f"ratio {kind} / without: {medians[kind] / medians['without']:.2f} (target <= 1.50 prepared)")
    return medians


def main() -> None:
    from sft.report.document import AggregatedResults

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--examples", type=int, default=1400)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = build_grid(Path(folder), args.experiments, args.examples, args.seeds)
        time_aggregate(root, True)  # warm imports (matplotlib, scipy, sklearn) for both
        prepare = time_prepare(root)
        times: dict[str, list[float]] = {"without": [], "cold": [], "warm": []}
        reading: list[float] = []
        commands: dict[str, list[float]] = {"without": [], "cold": [], "warm": []}
        for _ in range(args.repeats):  # alternating, so load on the machine hits all alike
            times["without"].append(time_aggregate(root, False))
            times["cold"].append(time_aggregate(root, True, cold=True))
            times["warm"].append(time_aggregate(root, True))
            reading.append(time_reading(root))
            commands["without"].append(time_command(root, False))
            commands["cold"].append(time_command(root, True, cold=True))
            commands["warm"].append(time_command(root, True))
        document = AggregatedResults.read(root / AggregatedResults.FILE)
    assert document.statistics is not None  # the last report was built with statistics
    comparisons = sum(len(section["comparisons"]) for section in document.statistics["sections"])
    print(f"{args.experiments} experiments x {args.seeds} seed(s) x {args.examples} test examples, "
          f"{args.repeats} repeats, {comparisons} paired comparisons, 1000 resamples")  # fmt: skip
    medians = print_timings("`aggregate` called in one process (its imports done once, before the timings)", times)
    print_timings("`python -m sft.cli aggregate` in a fresh process, as a user runs it (imports included)", commands)
    print(f"preparing one run's statistics (the runner's cost per finished run): {prepare * 1000:.0f} ms")
    print(f"of which parsing the predictions.jsonl files alone: {statistics.median(reading):.2f} s "
          f"({statistics.median(reading) / medians['without']:.2f} x the time without statistics)")  # fmt: skip
    print(f"bootstrap alone, 10,000 examples x 28 labels, 1,000 resamples, accuracy + 3 F1: {time_bootstrap():.2f} s")


if __name__ == "__main__":
    main()
