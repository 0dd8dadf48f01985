"""Generation: the model's answer to every prompt, batched with left padding and decoded with
`inference.generation_args` (greedy by default); free, or constrained by a grammar (`sft.predictors.grammar`):
a structured task's JSON Schema, or a generation task's `structured.regex` / `structured.choices`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import LogitsProcessorList

from sft.predictors import causal_lm
from sft.predictors.base import Fixed, Loaded, Predictor
from sft.predictors.grammar import Grammar, GrammarProcessor, grammar_problem
from sft.tasks.base import Scorer, Scores
from sft.tasks.structured import SCHEMA_DETAIL

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig
    from sft.config.schema import StructuredConfig
    from sft.data.prepare import ExperimentData
    from sft.tasks.base import Task


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids from the generation config and the tokenizer: chat models end a turn with
    their own token (e.g. <|im_end|>), which is not always the model's eos."""
    configured = model.generation_config.eos_token_id
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def constraint_of(settings: StructuredConfig, schema: dict[str, Any] | None) -> Grammar | None:
    """The grammar answers are decoded under: the schema's, else the regex or the choices; None when
    decoding is free (`structured.constrained` false, or nothing to constrain to)."""
    if not settings.constrained:
        return None
    if schema is not None:
        return Grammar.json_schema(schema)
    if settings.regex is not None:
        return Grammar.regex(settings.regex)
    if settings.choices is not None:
        return Grammar.choice(settings.choices)
    return None


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    batch_size: int = 8,
    generation_args: dict[str, Any] | None = None,
    grammar: Grammar | None = None,
) -> list[str]:
    """The model's continuation of every prompt, special tokens removed and whitespace stripped; under
    `grammar`, every continuation is a string the grammar accepts (completed by it when cut off)."""
    args = dict(generation_args or {})
    args.setdefault("eos_token_id", stop_token_ids(model, tokenizer))
    args.setdefault("pad_token_id", tokenizer.pad_token_id)
    stops = [args["eos_token_id"]] if isinstance(args["eos_token_id"], int) else list(args["eos_token_id"])
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generated tokens must follow every prompt directly
    outputs: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            encoded = tokenizer(
                [prompts[i] for i in indices], add_special_tokens=False, padding=True, return_tensors="pt"
            ).to(device)
            processor = GrammarProcessor(grammar, tokenizer, stops, len(indices)) if grammar else None
            extra = {"logits_processor": LogitsProcessorList([processor])} if processor else {}
            generated = model.generate(**encoded, **args, **extra)
            new_tokens = generated[:, encoded["input_ids"].shape[1] :].tolist()
            if processor is not None:
                new_tokens = [processor.generated(row, tokens) for row, tokens in enumerate(new_tokens)]
            for i, text in zip(indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                outputs[i] = text.strip()
    finally:
        tokenizer.padding_side = side
    return outputs


def _scorer(
    config: ExperimentConfig, task: Task, loaded: Loaded, sampler: Any, schema: dict[str, Any] | None
) -> Scorer:
    builder = causal_lm.prompt_builder(config, task, loaded.tokenizer)
    inference = config.inference
    grammar = constraint_of(config.structured, schema)
    details = {SCHEMA_DETAIL: schema} if schema is not None else {}

    def score(split: Dataset) -> Scores:
        prompts = causal_lm.prompts_of(config, builder, sampler, split)
        texts = generate(
            loaded.model, loaded.tokenizer, prompts, inference.batch_size, inference.generation_args, grammar
        )
        return Scores(texts=texts, details=dict(details))

    return score


def scorer(config: ExperimentConfig, task: Task, data: ExperimentData, loaded: Loaded, seed: int) -> Scorer:
    return _scorer(config, task, loaded, causal_lm.sampler_of(data, seed), data.schema)


def fixed_scorer(config: ExperimentConfig, task: Task, loaded: Loaded, fixed: Fixed) -> Scorer:
    return _scorer(config, task, loaded, causal_lm.fixed_sampler(fixed), fixed.schema)


def preflight(config: ExperimentConfig, task: Task) -> list[str]:
    """The causal LM's preflight, and a grammar the engine cannot compile (a configured schema with a keyword
    it does not enforce, a regex outside its syntax), before any model loads."""
    problems = causal_lm.preflight(config, task)
    grammar = constraint_of(config.structured, config.structured.json_schema)
    problem = grammar_problem(grammar) if grammar is not None else None
    if grammar is not None and problem is not None:
        key = {"json_schema": "structured.json_schema", "regex": "structured.regex", "choice": "structured.choices"}
        problems.append(
            f"{key[grammar.kind]}: the grammar engine cannot compile it ({problem}); change it, or set "
            "structured.constrained false to decode freely"
        )
    return problems


GENERATION = Predictor(
    "generation",
    load=causal_lm.load,
    train=causal_lm.train,
    scorer=scorer,
    preflight=preflight,
    fixed_scorer=fixed_scorer,
)
