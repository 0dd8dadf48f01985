"""Label scoring speed: sft's one-pass scorer beside the floor, the reference per-token design, brute
force and lm-evaluation-harness, on the same model, prompts and labels, measured side by side.

    python benchmarks/scoring.py [--repeats 3] [--prompts 32] [--hidden-size 384]

A random-weight Llama (sft.synthetic; ~2M parameters by default, so compute dominates Python overhead)
scores 32 chat prompts of about 128 tokens (instruction + two fixed in-context examples + a review)
against label sets of 3 single-token labels, 4 multi-token labels, 20 and 100 multi-token labels.
Columns are median CPU seconds (one torch thread; `--clock wall` for wall-clock) and their ratio to
the floor: one plain forward over the prompts that keeps the logits of the last position only. Methods:
- ours: `sft.scoring.label_scoring.label_logprobs` (shared prefix once, prompts once, one trie pass for the labels);
- ours, no shared prefix: the same with `shared_prefix=False` (the floor has no shared prefix either);
- reference per-token: the common design, written here: one forward over all prompts per label
  token position (per distinct label prefix), each recomputing prompt + label prefix from scratch;
- brute force: `sft.scoring.label_scoring.brute_force_logprobs`, one full forward per (prompt, label);
- lm-eval: lm-evaluation-harness's `HFLM.loglikelihood` on the same (prompt, label) requests.
Targets: ours/floor <= 1.2 (3-4 labels), <= 1.5 (20), <= 2.5 (100); with 20 and 100 labels ours is
>= 5x faster than reference per-token and >= 10x faster than lm-eval. "max |diff|" compares ours with
brute force.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import random
import statistics
import time
from collections.abc import Callable

import torch
from tabulate import tabulate

from sft.scoring.label_scoring import brute_force_logprobs, label_logprobs
from sft.scoring.label_tokens import split_all
from sft.scoring.trie import Trie, plan_prompt
from sft.synthetic import LEXICON, NOUNS, SENTENCES, SENTIMENT_WORDS, build_model, build_tokenizer

INSTRUCTION = "Classify the sentiment of the product review as negative, neutral or positive."
FIXED_EXAMPLES = [("the phone was excellent. the battery is lovely", "positive"),
                  ("the cable arrived today and it looks broken", "negative")]  # fmt: skip


def prompts_of(tokenizer, count: int, target_tokens: int, seed: int = 0) -> list[str]:
    """Chat prompts of about `target_tokens` tokens sharing the instruction and in-context examples."""
    rng = random.Random(seed)
    words = [word for group in SENTIMENT_WORDS.values() for word in group]
    prompts = []
    for _ in range(count):
        review = ""
        while True:
            sentence = rng.choice(SENTENCES).format(noun=rng.choice(NOUNS), word=rng.choice(words))
            candidate = f"{review} {sentence}".strip()
            messages = [{"role": "system", "content": INSTRUCTION}]
            for text, label in FIXED_EXAMPLES:
                messages += [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
            messages.append({"role": "user", "content": candidate})
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) > target_tokens and review:
                break
            review, last = candidate, prompt
        prompts.append(last)
    return prompts


def label_sets() -> dict[str, list[str]]:
    """Phrases of 1-3 words of the tokenizer's corpus (1-4 tokens each), drawn at random, so that labels
    share few prefixes: every set but the first needs a label trie."""
    words = sorted({*NOUNS, *LEXICON, *LEXICON.values(), *(w for group in SENTIMENT_WORDS.values() for w in group)})
    rng = random.Random(0)
    phrases: list[str] = []
    while len(phrases) < 104:
        phrase = " ".join(rng.sample(words, k=rng.choice([1, 2, 2, 3])))
        if phrase not in phrases:
            phrases.append(phrase)
    multi = [phrase for phrase in phrases if " " in phrase]
    return {
        "3 single-token": ["negative", "neutral", "positive"],
        "4 multi-token": multi[:4],
        "20 multi-token": phrases[4:24],
        "100 multi-token": phrases[4:104],
    }


def padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and mask, with position ids counting real tokens only."""
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence) :] = torch.tensor(sequence)
        mask[row, width - len(sequence) :] = 1
    return ids, mask


@torch.inference_mode()
def last_logprobs(model, sequences: list[list[int]], pad_id: int, batch_size: int) -> torch.Tensor:
    """Log-softmax at the last position of every sequence (one plain forward per batch)."""
    outputs = []
    for start in range(0, len(sequences), batch_size):
        ids, mask = padded(sequences[start : start + batch_size], pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        outputs.append(torch.log_softmax(logits[:, -1].float(), dim=-1))
    return torch.cat(outputs)


def reference_per_token(model, tokenizer, prompts: list[str], labels: list[str], batch_size: int) -> torch.Tensor:
    """One forward over all prompts per label token position: prompt + each distinct label prefix,
    recomputed from scratch; cost grows with labels x tokens."""
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    label_ids = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    pad_id = tokenizer.pad_token_id
    scores = torch.zeros(len(prompts), len(labels))
    prefixes = sorted({tuple(ids[:k]) for ids in label_ids for k in range(len(ids))})
    for prefix in prefixes:
        logprobs = last_logprobs(model, [ids + list(prefix) for ids in prompt_ids], pad_id, batch_size)
        for l, ids in enumerate(label_ids):
            if len(ids) > len(prefix) and tuple(ids[: len(prefix)]) == prefix:
                scores[:, l] += logprobs[:, ids[len(prefix)]]
    return scores


def lm_eval_scores(model, tokenizer, prompts: list[str], labels: list[str], batch_size: int) -> torch.Tensor:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=(prompt, label), idx=index)
        for index, (prompt, label) in enumerate(itertools.product(prompts, labels))
    ]
    results = harness.loglikelihood(requests, disable_tqdm=True)
    return torch.tensor([logprob for logprob, _ in results]).reshape(len(prompts), len(labels))


# CPU seconds of this process by default: on a machine shared with other jobs, wall-clock time measures the
# scheduler more than the method; with one torch thread, CPU time is the work done.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def median_seconds(function: Callable[[], object], repeats: int, clock: Callable[[], float]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = clock()
        result = function()
        times.append(clock() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the fast methods (median)")
    parser.add_argument("--slow-repeats", type=int, default=1, help="repeats of brute force, per-token, lm-eval")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--sets", nargs="*", help="label sets to run (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is the work done)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    torch.manual_seed(0)

    tokenizer = build_tokenizer("llama3")
    model = build_model(tokenizer, "llama", seed=0, hidden_size=args.hidden_size, layers=args.layers).eval()
    parameters = sum(p.numel() for p in model.parameters())
    prompts = prompts_of(tokenizer, args.prompts, args.prompt_tokens)
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    print(
        f"Llama {parameters / 1e6:.1f}M parameters, {len(prompts)} prompts of {min(lengths)}-{max(lengths)} tokens, "
        f"batch size {args.batch_size}, torch threads {torch.get_num_threads()}, {args.clock} seconds"
    )
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    batch = args.batch_size
    rows = []
    sets = label_sets()
    for name in args.sets or sets:
        labels = sets[name]
        plans = [plan_prompt(row) for row in split_all(tokenizer, prompts, labels)]
        tokens = [len(sequence) for sequence in plans[0].sequences]
        nodes = len(Trie(plans).nodes)
        fast = {
            "floor": lambda: last_logprobs(model, prompt_ids, tokenizer.pad_token_id, batch),
            "ours": lambda labels=labels: label_logprobs(model, tokenizer, prompts, labels, batch),
            "ours, no shared prefix": lambda labels=labels: label_logprobs(
                model, tokenizer, prompts, labels, batch, shared_prefix=False
            ),
        }
        slow = {
            "reference per-token": lambda labels=labels: reference_per_token(model, tokenizer, prompts, labels, batch),
            "brute force": lambda labels=labels: brute_force_logprobs(model, tokenizer, prompts, labels, batch),
            "lm-eval": lambda labels=labels: lm_eval_scores(model, tokenizer, prompts, labels, batch),
        }
        for function in fast.values():  # warm-up
            function()
        timings = {}
        for _ in range(args.repeats):  # interleaved, so machine noise hits every method alike
            for method, function in fast.items():
                timings.setdefault(method, []).append(median_seconds(function, 1, clock)[0])
        seconds = {method: statistics.median(values) for method, values in timings.items()}
        results = {}
        for method, function in slow.items():
            seconds[method], results[method] = median_seconds(function, args.slow_repeats, clock)
        scores = label_logprobs(model, tokenizer, prompts, labels, batch)
        difference = (scores.double() - results["brute force"].double()).abs().max().item()
        floor = seconds["floor"]
        row = [name, f"{min(tokens)}-{max(tokens)}", nodes, f"{floor:.3f}"]
        for method in [*list(fast)[1:], *slow]:
            row.append(f"{seconds[method]:.2f} ({seconds[method] / floor:.1f}x)")
        ours = seconds["ours"]
        row += [f"{seconds['reference per-token'] / ours:.0f}x", f"{seconds['lm-eval'] / ours:.0f}x"]
        row.append(f"{difference:.1e}")
        rows.append(row)
        print(" | ".join(map(str, row)), flush=True)  # progress; the table follows at the end
    headers = ["labels", "tokens", "trie nodes", "floor s", "ours s (/floor)", "ours no-prefix", "ref per-token",
               "brute force", "lm-eval", "ref/ours", "lm-eval/ours", "max |diff|"]  # fmt: skip
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
