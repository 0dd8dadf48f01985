"""Early stopping against training to the last epoch, side by side in one run: the MiniLM head on
TweetEval emotion (etc/configs/jsonnet/tweet_emotion_early_stopping.jsonnet), 64 shots per label, up to
30 epochs, for three seeds.

    python benchmarks/early_stopping.py [--seeds 1,2,3] [--results-path build/early_stopping] [--epochs 30]
        [--data ../shared/data/tweeteval/emotion]

`--data` is the config's `data` external variable: the local copy in ../shared/data by default (relative
to the working directory, as the config's hashes are pinned with it), or cardiffnlp/tweet_eval for the hub.

Prints per seed the test macro-F1 of the kept adapter and of the 30-epoch adapter, the epoch training
stopped at and the best epoch, the share of training wall time the evaluations took, the means, whether
the target holds (kept >= 30 epochs - 0.01 on the mean, stopped before the last epoch on >= 2 seeds),
and every learning curve. The figures are also written to <results-path>/summary.json.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "etc" / "configs" / "jsonnet" / "tweet_emotion_early_stopping.jsonnet"
DATA = "../shared/data/tweeteval/emotion"
HUB = "cardiffnlp/tweet_eval"
EARLY, FULL = "minilm_head_early_stopping", "minilm_head_30_epochs"


def scaled(config, args):
    """The config with the command line's epochs, shots, evaluation examples and test examples."""
    training = config.training
    trainer_args = {**training.trainer_args, "num_train_epochs": args.epochs}
    if args.batch_size:
        trainer_args["per_device_train_batch_size"] = args.batch_size
    if args.lr_scheduler:
        trainer_args["lr_scheduler_type"] = args.lr_scheduler
    if args.learning_rate:
        trainer_args["learning_rate"] = args.learning_rate
    updates: dict = {"trainer_args": trainer_args}
    if args.eval_examples and training.evaluates():
        updates["eval_examples"] = args.eval_examples
    dataset = config.dataset.model_copy(
        update={"shots": args.shots or config.dataset.shots, "max_n_test": args.max_n_test}
    )
    return config.model_copy(update={"training": training.model_copy(update=updates), "dataset": dataset})


def main() -> None:
    from sft.experiment.checks import validate_grid
    from sft.experiment.run import run_experiment
    from sft.results.files import atomic_write_json
    from sft.results.layout import Run
    from sft.results.run_record import ResultsRecord

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--results-path", type=Path, default=REPO / "build" / "early_stopping")
    # A smaller scale for a busy machine (the target is for the defaults, the example config's values).
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--shots", type=int, default=None, help="Shots per label (default: the config's 64).")
    parser.add_argument("--eval-examples", type=int, default=None, help="Default: the config's 300.")
    parser.add_argument("--max-n-test", type=int, default=None, help="Default: the whole test split.")
    parser.add_argument("--batch-size", type=int, default=None, help="Training batch; default: the config's 32.")
    parser.add_argument("--lr-scheduler", default=None, help="Default: the config's (linear decay).")
    parser.add_argument("--learning-rate", type=float, default=None, help="Default: the config's 5e-4.")
    parser.add_argument("--only", choices=["early", "full"], help="Run one setting (run the other in parallel).")
    parser.add_argument("--data", default=DATA, help=f"The config's data: a local folder (default {DATA}) or {HUB}.")
    args = parser.parse_args()
    if args.data != HUB and not Path(args.data).is_dir():
        raise SystemExit(f"{args.data} is not present: give --data a local copy of TweetEval emotion, or {HUB}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    configs = {name: scaled(config, args) for name, config in validate_grid(GRID, {"data": args.data}).items()}

    results: dict[str, dict[int, dict]] = {EARLY: {}, FULL: {}}
    for seed in seeds:  # the two settings of a seed one after the other, so they share the machine's load
        for name in (EARLY, FULL):
            run = Run(name, seed, args.results_path)
            if args.only and name != {"early": EARLY, "full": FULL}[args.only]:
                continue
            done = run.folder / ResultsRecord.FILE  # seeds may run in parallel processes, then be summarized
            finished = ResultsRecord.read(done).content() if done.exists() else None
            results[name][seed] = finished or run_experiment(configs[name], run)

    if args.only:
        return
    rows, summary = [], {"seeds": seeds, "epochs": args.epochs, "runs": []}
    steps_per_epoch = results[FULL][seeds[0]]["training"]["train_steps"] / args.epochs
    for seed in seeds:
        early, full = results[EARLY][seed], results[FULL][seed]
        selection = early["training"]["selection"]
        stopped_epoch = early["training"]["train_steps"] / steps_per_epoch
        eval_share = selection["eval_seconds"] / early["timings"]["train_seconds"]
        run = {
            "seed": seed,
            "kept_f1_macro": early["metrics"]["f1_macro"],
            "full_f1_macro": full["metrics"]["f1_macro"],
            "best_epoch": selection["best_epoch"],
            "best_validation_f1_macro": selection["best_value"],
            "stopped_epoch": stopped_epoch,
            "stopped_early": selection["stopped_early"],
            "eval_share_of_train_time": eval_share,
            "train_seconds_early": early["timings"]["train_seconds"],
            "train_seconds_full": full["timings"]["train_seconds"],
            "learning_curve": selection["learning_curve"],
        }
        summary["runs"].append(run)
        rows.append(
            [
                seed,
                f"{run['kept_f1_macro']:.4f}",
                f"{run['full_f1_macro']:.4f}",
                run["best_epoch"],
                f"{stopped_epoch:g}",
                run["stopped_early"],
                f"{eval_share:.1%}",
                f"{run['train_seconds_early']:.0f} / {run['train_seconds_full']:.0f}",
            ]
        )
    kept = statistics.mean(run["kept_f1_macro"] for run in summary["runs"])
    full = statistics.mean(run["full_f1_macro"] for run in summary["runs"])
    stopped = sum(run["stopped_early"] for run in summary["runs"])
    share = statistics.median(run["eval_share_of_train_time"] for run in summary["runs"])
    summary.update(
        mean_kept_f1_macro=kept,
        mean_full_f1_macro=full,
        stopped_early_seeds=stopped,
        median_eval_share=share,
        target_met=kept >= full - 0.01 and stopped >= 2,
    )
    headers = ["seed", "kept test F1", f"{args.epochs}-epoch test F1", "best epoch", "stopped at epoch",
               "stopped early", "eval share of train time", "train s (early / full)"]  # fmt: skip
    print(tabulate(rows, headers=headers, tablefmt="github"))
    print(f"\nmean test macro-F1: kept {kept:.4f}, {args.epochs} epochs {full:.4f} (difference {kept - full:+.4f})")
    print(f"stopped before the last epoch on {stopped} of {len(seeds)} seeds; median eval share {share:.1%}")
    print(f"target (kept >= full - 0.01 and >= 2 seeds stopped early): {'met' if summary['target_met'] else 'NOT met'}")
    for run in summary["runs"]:
        curve = [
            [point["epoch"], point["train_loss"], point["validation_loss"], point["metrics"]["f1_macro"]]
            for point in run["learning_curve"]
        ]
        print(f"\nseed {run['seed']} learning curve")
        print(tabulate(curve, headers=["epoch", "train loss", "val loss", "val macro-F1"], floatfmt=".4f"))
    atomic_write_json(args.results_path / "summary.json", summary)


if __name__ == "__main__":
    main()
