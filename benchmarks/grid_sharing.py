"""Train once, evaluate many: a grid of 2 training settings x 3 inference settings on the quickstart model,
run with shared training (the default) and with `--no-share-training`, side by side.

The training settings are the quickstart's few-shot ones (LoRA r 8, 15 epochs, learning rate 3e-3, 32
shots per label) with PEFT's default and the gaussian initialization; the inference settings are the
sum, mean and per-char label normalizations.

Printed: the trainings each mode ran (results.json `adapter_source`), the grid's makespan (first
experiment process to last result, as benchmarks/runner.py measures it, so the fork server's
start-up, equal in both, is left out) and the whole command's wall time, their ratios, and whether
every prediction (labels and probabilities) is identical in both modes. The modes alternate over
`--repeats` so load changes on a shared machine hit both alike; medians are printed.

    PYTHONPATH=. python benchmarks/grid_sharing.py [--repeats 3] [--jobs 2] [--shots 32] [--epochs 15]
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
from runner import makespan  # benchmarks/runner.py: first experiment process to last result
from tabulate import tabulate

TRAININGS = {"default": True, "gaussian": "gaussian"}
INFERENCES = ("sum", "mean", "per_char")
TARGET_RATIO = 2.5


def grid(root: Path, shots: int, epochs: int, max_n_test: int) -> dict:
    """The 6 experiments: the quickstart's few-shot config crossed with the three normalizations."""
    from sft.config import parse_config

    base = {
        "dataset": {"path": str(root / "data"), "shots": shots, "validation_split": "validation",
                    "max_n_test": max_n_test},
        "model": {"name": str(root / "model")},
        "prompting": {
            "instruction": "Classify the sentiment of the product review as negative, neutral or positive.",
            "input_columns": ["text"],
            "output_column": "label",
            "max_input_length": 64,
        },
        "training": {
            "trainer_args": {"num_train_epochs": epochs, "learning_rate": 3e-3, "per_device_train_batch_size": 8,
                             "lr_scheduler_type": "constant", "logging_steps": 10}
        },
    }  # fmt: skip
    return {
        f"{init}_{normalization}": parse_config(
            {
                **base,
                "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear", "init_lora_weights": value},
                "inference": {"batch_size": 16, "normalization": normalization},
            }
        )
        for init, value in TRAININGS.items()
        for normalization in INFERENCES
    }


def run_grid(configs: dict, results: Path, jobs: int, share: bool) -> dict:
    from sft.results.layout import run_folders
    from sft.results.run_record import ResultsRecord
    from sft.runner.options import Options
    from sft.runner.scheduler import run_experiments

    began = time.time()
    options = Options(jobs=jobs, share_training=share)
    code = run_experiments(configs, results, options, Console(file=io.StringIO()))
    wall = time.time() - began
    assert code == 0, (results / "aggregated_results.md").read_text()[-3000:]
    outcomes = [ResultsRecord.read(folder / ResultsRecord.FILE) for folder in run_folders(results)]
    return {
        "wall": wall,
        "makespan": makespan(results),
        "trainings": sum(outcome.adapter_source == "trained" for outcome in outcomes),
        "reused": sum(outcome.adapter_source == "reused" for outcome in outcomes),
    }


def same_predictions(configs: dict, shared: Path, independent: Path) -> bool:
    from sft.results.files import read_jsonl
    from sft.results.layout import Run

    return all(
        read_jsonl(Run(name, 42, shared).folder / "predictions.jsonl")
        == read_jsonl(Run(name, 42, independent).folder / "predictions.jsonl")
        for name in configs
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--shots", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--max-n-test", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sft.synthetic import build_quickstart

    with tempfile.TemporaryDirectory(prefix="sft-bench-sharing-") as tmp:
        root = build_quickstart(Path(tmp) / "quickstart")
        configs = grid(root, args.shots, args.epochs, args.max_n_test)
        measured: dict[bool, list[dict]] = {True: [], False: []}
        identical = True
        for repeat in range(args.repeats):
            folders = {}
            for share in (False, True) if repeat % 2 == 0 else (True, False):  # alternate the order
                folders[share] = Path(tmp) / f"{'shared' if share else 'independent'}-{repeat}"
                measured[share].append(run_grid(configs, folders[share], args.jobs, share))
            identical &= same_predictions(configs, folders[True], folders[False])

    def median(share: bool, key: str) -> float:
        return statistics.median(run[key] for run in measured[share])

    rows = [
        [label, f"{median(share, 'trainings'):.0f}", f"{median(share, 'reused'):.0f}",
         f"{median(share, 'makespan'):.1f}", f"{median(share, 'wall'):.1f}"]
        for label, share in (("--no-share-training", False), ("shared (default)", True))
    ]  # fmt: skip
    print(
        f"Grid of {len(TRAININGS)} training settings x {len(INFERENCES)} inference settings on the quickstart model "
        f"({args.shots} shots per label, {args.epochs} epochs, {args.max_n_test} test examples, --jobs {args.jobs}, "
        f"median of {args.repeats}, "
        f"{os.cpu_count()} CPUs shared)"
    )
    print(tabulate(rows, headers=["mode", "trainings", "reused", "makespan s", "wall s"]))
    makespan_ratio = median(False, "makespan") / median(True, "makespan")
    wall_ratio = median(False, "wall") / median(True, "wall")
    trainings = (median(True, "trainings"), median(False, "trainings"))
    print(f"trainings: {trainings[0]:.0f} instead of {trainings[1]:.0f}")
    print(f"makespan ratio (unshared / shared): {makespan_ratio:.2f}x; whole-command wall ratio: {wall_ratio:.2f}x")
    print(f"predictions identical in both modes: {identical}")
    met = trainings == (2, 6) and makespan_ratio >= TARGET_RATIO and identical
    print(
        f"target (2 trainings instead of 6, >= {TARGET_RATIO}x, identical predictions): {'met' if met else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
