"""Constrained decoding against free decoding, side by side: time per generated token and the share of
answers that parse and fit the schema, on the GoEmotions structured example (real comments, the example
config's schema) or on sft.synthetic's extraction data; and the two grammar engines considered
(llguidance, which sft uses, and outlines-core when installed): compile time and time per step.

    python benchmarks/structured.py --data ../shared/data/goemotions/ekman --examples 64

The model is a tiny random-weight Qwen2 from sft.synthetic unless --model names one: its forward pass is
the cheapest there is, so the grammar's share of the time per token is the largest it gets. Free and
constrained runs alternate batch by batch, so load on the machine affects both alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EMOTIONS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
SENTIMENT = {"anger": "negative", "disgust": "negative", "fear": "negative", "sadness": "negative",
             "joy": "positive", "surprise": "ambiguous", "neutral": "neutral"}  # fmt: skip
GOEMOTIONS_SCHEMA = {
    "type": "object",
    "properties": {
        "emotions": {"type": "array", "items": {"enum": EMOTIONS}, "minItems": 1, "uniqueItems": True},
        "sentiment": {"enum": ["ambiguous", "negative", "neutral", "positive"]},
    },
    "required": ["emotions", "sentiment"],
    "additionalProperties": False,
}


def examples(data: str | None, count: int) -> tuple[list[str], list[dict[str, Any]], dict[str, Any], str]:
    """(texts, targets, schema, instruction): GoEmotions' test comments when `data` is its folder, else
    synthetic product reviews with their inferred schema."""
    from sft.synthetic import extraction_examples
    from sft.tasks.structured import infer_schema

    if data:
        rows = [json.loads(line) for line in (Path(data) / "test.jsonl").read_text(encoding="utf-8").splitlines()]
        rows = rows[:count]
        targets = []
        for row in rows:
            moods = list(dict.fromkeys(SENTIMENT[label] for label in row["labels"]))
            targets.append({"emotions": row["labels"], "sentiment": moods[0] if len(moods) == 1 else "ambiguous"})
        instruction = "Which emotions does the comment express, and what is its sentiment? Answer in JSON."
        return [row["text"] for row in rows], targets, GOEMOTIONS_SCHEMA, instruction
    found = extraction_examples(count, seed=3)
    schema = infer_schema([example["target"] for example in extraction_examples(200, seed=1)], enum_limit=32)
    return [e["text"] for e in found], [e["target"] for e in found], schema, "Extract the review as JSON."


def decode(model: Any, tokenizer: Any, prompts: list[str], batch_size: int, new_tokens: int, grammar: Any) -> Any:
    """(seconds, decoding steps, texts) of one batch: model.generate with or without the grammar."""
    import torch
    from transformers import LogitsProcessorList

    from sft.predictors.generation import stop_token_ids
    from sft.predictors.grammar import GrammarProcessor

    stops = stop_token_ids(model, tokenizer)
    encoded = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    started = time.perf_counter()
    processor = GrammarProcessor(grammar, tokenizer, stops, len(prompts)) if grammar is not None else None
    extra = {"logits_processor": LogitsProcessorList([processor])} if processor else {}
    with torch.inference_mode():
        out = model.generate(**encoded, max_new_tokens=new_tokens, do_sample=False, eos_token_id=stops,
                             pad_token_id=tokenizer.pad_token_id, **extra)  # fmt: skip
    new = out[:, encoded["input_ids"].shape[1] :].tolist()
    if processor is not None:
        new = [processor.generated(row, tokens) for row, tokens in enumerate(new)]
    seconds = time.perf_counter() - started
    steps = out.shape[1] - encoded["input_ids"].shape[1]
    return seconds, steps, tokenizer.batch_decode(new, skip_special_tokens=True)


def engines(tokenizer: Any, schema: dict[str, Any], targets: list[dict[str, Any]]) -> dict[str, Any]:
    """Compile time and time per step (mask of the next token, then advance) of each engine, walking the
    tokens of the canonical targets."""
    import llguidance
    import llguidance.hf
    import numpy as np

    from sft.predictors.grammar import Grammar, _compiled, _fill
    from sft.tasks.structured import canonical

    sequences = [tokenizer(canonical(target), add_special_tokens=False)["input_ids"] for target in targets]
    steps = sum(len(ids) for ids in sequences)
    found: dict[str, Any] = {}
    started = time.perf_counter()  # the engine's view of the vocabulary and the grammar, nothing cached
    engine = llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer), eos_token=tokenizer.eos_token_id)
    text = _compiled(Grammar.json_schema(schema))
    llguidance.LLMatcher(engine, text, log_level=0)
    compiled = time.perf_counter() - started
    bitmask = np.zeros((1, (engine.vocab_size + 31) // 32), dtype=np.int32)
    started = time.perf_counter()
    for ids in sequences:
        matcher = llguidance.LLMatcher(engine, text, log_level=0)
        for token in ids:
            _fill(matcher, bitmask, 0)
            matcher.consume_token(token)
    found["llguidance"] = {"compile_s": compiled, "step_us": 1e6 * (time.perf_counter() - started) / steps}
    try:
        from outlines_core import Guide, Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema
    except ImportError:
        return found
    started = time.perf_counter()
    vocabulary: dict[str, list[int]] = {}
    for token, index in tokenizer.get_vocab().items():
        if index not in tokenizer.all_special_ids:
            vocabulary.setdefault(tokenizer.convert_tokens_to_string([token]), []).append(index)
    index = Index(build_regex_from_schema(json.dumps(schema), ""), Vocabulary(tokenizer.eos_token_id, vocabulary))
    compiled = time.perf_counter() - started
    started = time.perf_counter()
    for ids in sequences:
        guide = Guide(index)
        for token in ids:
            guide.get_tokens()
            if token in guide.get_tokens():
                guide.advance(token)
    found["outlines-core"] = {"compile_s": compiled, "step_us": 1e6 * (time.perf_counter() - started) / steps}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a GoEmotions (Ekman) folder; default: synthetic extraction data")
    parser.add_argument("--model", help="a causal LM folder; default: a tiny random-weight Qwen2")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sft.predictors.grammar import Grammar
    from sft.synthetic import save_tiny_model
    from sft.tasks.structured import validated

    with tempfile.TemporaryDirectory() as scratch:
        path = args.model or str(save_tiny_model(Path(scratch) / "model", architecture="qwen2", hidden_size=128,
                                                 initializer_range=0.1))  # fmt: skip
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    texts, targets, schema, instruction = examples(args.data, args.examples)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": instruction}, {"role": "user", "content": text}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for text in texts
    ]
    grammar = Grammar.json_schema(schema)
    decode(model, tokenizer, prompts[:2], 2, 4, grammar)  # warm up both paths
    decode(model, tokenizer, prompts[:2], 2, 4, None)
    totals = {"free": [0.0, 0, []], "constrained": [0.0, 0, []]}
    for start in range(0, len(prompts), args.batch_size):
        batch = prompts[start : start + args.batch_size]
        for name, used in (("free", None), ("constrained", grammar)):
            seconds, steps, answers = decode(model, tokenizer, batch, len(batch), args.max_new_tokens, used)
            totals[name][0] += seconds
            totals[name][1] += steps
            totals[name][2] += answers
    print(f"{len(prompts)} prompts, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
          f"torch threads {torch.get_num_threads()}, data {args.data or 'synthetic'}")  # fmt: skip
    per_step = {}
    for name, (seconds, steps, answers) in totals.items():
        valid = sum(validated(text, schema) is not None for text in answers) / len(answers)
        per_step[name] = seconds / steps
        print(f"{name:12s} {1000 * seconds / steps:8.2f} ms per decoding step ({steps} steps)   valid {valid:.3f}")
    print(f"ratio constrained / free per step: {per_step['constrained'] / per_step['free']:.3f}")
    for engine, figures in engines(tokenizer, schema, targets).items():
        compiled, step = 1000 * figures["compile_s"], figures["step_us"]
        print(f"engine {engine:14s} compile {compiled:8.1f} ms   {step:7.1f} µs per step")


if __name__ == "__main__":
    main()
