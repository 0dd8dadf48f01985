"""Training throughput: sft's default batching beside plain TRL `SFTTrainer` with its default settings, on
the same model, examples, seed, thread count and optimizer steps, measured side by side in one run.

    python benchmarks/training.py [--steps 6] [--threads 1] [--hidden-size 512] [--layers 7]
        [--data ../shared/data/tweeteval/emotion]

A random-weight Qwen2 built by sft.synthetic (about 23M parameters by default) learns TweetEval emotion
prompts (64 shots per label, prompts with 0 and with 2 in-context examples per label) built by sft's
`PromptBuilder`. Both sides train the same LoRA (r 8, all linear layers) for `--steps` optimizer steps
of 8 examples in the same order (the trainer's seeded sampler), in float32 on CPU:
- plain TRL: `SFTTrainer(model, SFTConfig(...), train_dataset=prompt/completion pairs, peft_config=...)`
  with TRL's defaults (padded batches, gradient checkpointing); only bf16 is off, as sft turns it off
  on CPU, so both sides compute in the same precision;
- sft: `sft.training.causal_lm.prepare_trainer` and `run_trainer`, what a run calls, with its default
  `training.batching: fastest` (padding-free rows, SDPA per example, no gradient checkpointing on CPU).
Figures: training tokens (the examples' tokens, never pads) per second of wall time and per CPU second
of this process (steadier on a shared machine), their ratio sft / TRL (target >= 1.4), the padding
share of the positions computed, and the final training loss with its difference from the padded
run's (target within 1%). The data is a local copy; the benchmark says so and exits when it is absent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from tabulate import tabulate
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from sft.config import ExperimentConfig, parse_config
from sft.data.prepare import prepare_data
from sft.data.prompts import ICLSampler, PromptBuilder, training_examples
from sft.model.loading import load_model, load_tokenizer
from sft.synthetic import save_tiny_model
from sft.tasks import task_for
from sft.training.batching import (
    FLASH_ATTENTION,
    VARLEN_SDPA,
    Batching,
    counting_trainer,
    flash_attention_installed,
    packed_attention,
    throughput_stats,
)
from sft.training.causal_lm import prepare_trainer
from sft.training.common import run_trainer

DATA = "../shared/data/tweeteval/emotion"
INSTRUCTION = "Classify the emotion of the tweet as anger, joy, optimism or sadness."
SEED, BATCH, SHOTS = 0, 8, 64


def config_for(data: str, model: Path, icl: int, steps: int, **trainer_args: Any) -> ExperimentConfig:
    return parse_config(
        {
            "dataset": {"path": data, "task_type": "classification", "shots": SHOTS},
            "model": {"name": str(model), "device": "cpu"},
            "prompting": {"instruction": INSTRUCTION, "input_columns": ["text"], "output_column": "label"},
            "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
            "training": {
                "icl_examples": icl,
                "trainer_args": {
                    "max_steps": steps,
                    "per_device_train_batch_size": BATCH,
                    "learning_rate": 1e-3,
                    **trainer_args,
                },
            },
        }
    )


def timed(train: Any) -> tuple[Any, float, float]:
    """Run `train()`; return its result, wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = train()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def plain_trl(config: ExperimentConfig, model_folder: Path, folder: Path) -> dict[str, Any]:
    """The script a researcher would write: TRL's defaults, sft's prompts as the data."""
    assert config.training is not None and config.lora is not None
    task = task_for(config)
    data = prepare_data(config, SEED, task=task)
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    builder = PromptBuilder(tokenizer, config.prompting, target=lambda value: task.target_text(value, config.prompting))
    sampler = ICLSampler.of(data, SEED, purpose="train")
    assert data.shots is not None
    examples = training_examples(builder, sampler, data.shots, config.training.icl_examples)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    torch.manual_seed(SEED)
    arguments = SFTConfig(
        output_dir=str(folder), report_to="none", save_strategy="no", disable_tqdm=True, seed=SEED, bf16=False,
        logging_steps=1, **config.training.trainer_args,
    )  # fmt: skip
    # Counting the batches' tokens in compute_loss is all the subclass adds.
    trainer = counting_trainer(SFTTrainer)(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=LoraConfig(**config.lora.peft_kwargs()),
    )
    result, wall, cpu = timed(trainer.train)
    stats = throughput_stats(trainer.token_counts, wall, Batching("padded", model.config._attn_implementation))
    return {**stats, "loss": float(result.training_loss), "wall": wall, "cpu": cpu, "steps": result.global_step}


def sft_default(config: ExperimentConfig, folder: Path) -> dict[str, Any]:
    """What an sft run does: `train_adapter`'s trainer, run by `run_trainer`."""
    task = task_for(config)
    data = prepare_data(config, SEED, task=task)
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, trainable=True)
    prepared = prepare_trainer(config, task, data, model, tokenizer, SEED, folder)
    trained, wall, cpu = timed(
        lambda: run_trainer(
            prepared.trainer, prepared.examples, prepared.initial_adapter, prepared.selection, prepared.batching
        )
    )
    stats = {**trained.stats, **throughput_stats(prepared.trainer.token_counts, wall, prepared.batching)}
    return {**stats, "loss": stats["train_loss"], "wall": wall, "cpu": cpu, "steps": stats["train_steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps of each training")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--layers", type=int, default=7)
    parser.add_argument("--icl", type=int, nargs="+", default=[0, 2], help="in-context examples per label")
    parser.add_argument("--data", default=DATA, help="a local copy of TweetEval emotion (JSON Lines splits)")
    parser.add_argument(
        "--breakdown", action="store_true", help="add sft with gradient checkpointing on: the padding's share alone"
    )
    args = parser.parse_args()
    if not (Path(args.data) / "train.jsonl").is_file():
        print(f"skipped: no TweetEval emotion data in {args.data} (pass --data)")
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        model_folder = save_tiny_model(
            Path(scratch) / "model", architecture="qwen2", hidden_size=args.hidden_size, layers=args.layers
        )
        parameters = sum(p.numel() for p in load_model(config_for(args.data, model_folder, 0, 1).model).parameters())
        print(f"model: Qwen2 (sft.synthetic), {parameters / 1e6:.1f}M parameters; {args.threads} thread(s); "
              f"{args.steps} steps of {BATCH} examples; torch {torch.__version__}")  # fmt: skip
        table = []
        for icl in args.icl:
            config = config_for(args.data, model_folder, icl, args.steps)
            trl = plain_trl(config, model_folder, Path(scratch) / f"trl-{icl}")
            ours = sft_default(config, Path(scratch) / f"sft-{icl}")
            assert trl["train_tokens"] == ours["train_tokens"], "the two sides must train on the same batches"
            assert trl["steps"] == ours["steps"] == args.steps
            sides = [("plain TRL", trl), ("sft default", ours)]
            if args.breakdown:
                checkpointed = config_for(args.data, model_folder, icl, args.steps, gradient_checkpointing=True)
                sides.append(("sft, checkpointing on", sft_default(checkpointed, Path(scratch) / f"ckpt-{icl}")))
            for name, run in sides:
                table.append(
                    [
                        icl,
                        name,
                        f"{run['batching_used']} ({run['attention']})",
                        f"{run['train_tokens'] / run['steps']:.0f}",
                        f"{run['padding_share']:.1%}",
                        f"{run['wall'] / run['steps']:.2f}",
                        f"{run['train_tokens'] / run['wall']:.0f}",
                        f"{run['train_tokens'] / run['cpu']:.0f}",
                        f"{run['loss']:.5f}",
                    ]
                )
            speedups = [f"{trl['wall'] / ours['wall']:.2f}x", f"{trl['cpu'] / ours['cpu']:.2f}x"]
            table.append(
                [icl, "sft / TRL", "", "", "", "", *speedups, f"{(ours['loss'] - trl['loss']) / trl['loss']:+.3%}"]
            )
    headers = ["ICL/label", "side", "batching (attention)", "tokens/step", "padding", "s/step", "tokens/s (wall)",
               "tokens/CPU s", "train loss"]  # fmt: skip
    print(tabulate(table, headers=headers, tablefmt="github"))
    gpu = packed_attention("sdpa", half_on_gpu=True, flash_installed=flash_attention_installed())
    named = {FLASH_ATTENTION[0]: "flash-attention 2 varlen kernels", VARLEN_SDPA: "SDPA per example (no flash-attn)"}
    print(f"On a CUDA GPU in bf16 the default would train padding-free rows with {named.get(gpu, gpu)} here.")


if __name__ == "__main__":
    main()
