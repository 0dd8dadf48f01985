"""Generation: the model's free-text answer to every prompt, batched with left padding and decoded with
`inference.generation_args` (greedy by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sft.predictors import causal_lm
from sft.predictors.base import Fixed, Loaded, Predictor
from sft.tasks.base import Scorer, Scores

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import ExperimentConfig
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


@torch.inference_mode()
def generate(
    model: Any, tokenizer: Any, prompts: list[str], batch_size: int = 8, generation_args: dict[str, Any] | None = None
) -> list[str]:
    """The model's continuation of every prompt, special tokens removed and whitespace stripped."""
    args = dict(generation_args or {})
    args.setdefault("eos_token_id", stop_token_ids(model, tokenizer))
    args.setdefault("pad_token_id", tokenizer.pad_token_id)
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
            generated = model.generate(**encoded, **args)
            new_tokens = generated[:, encoded["input_ids"].shape[1] :]
            for i, text in zip(indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                outputs[i] = text.strip()
    finally:
        tokenizer.padding_side = side
    return outputs


def _scorer(config: ExperimentConfig, task: Task, loaded: Loaded, sampler: Any) -> Scorer:
    builder = causal_lm.prompt_builder(config, task, loaded.tokenizer)
    inference = config.inference

    def score(split: Dataset) -> Scores:
        prompts = causal_lm.prompts_of(config, builder, sampler, split)
        texts = generate(loaded.model, loaded.tokenizer, prompts, inference.batch_size, inference.generation_args)
        return Scores(texts=texts)

    return score


def scorer(config: ExperimentConfig, task: Task, data: ExperimentData, loaded: Loaded, seed: int) -> Scorer:
    return _scorer(config, task, loaded, causal_lm.sampler_of(data, seed))


def fixed_scorer(config: ExperimentConfig, task: Task, loaded: Loaded, fixed: Fixed) -> Scorer:
    return _scorer(config, task, loaded, causal_lm.fixed_sampler(fixed))


GENERATION = Predictor(
    "generation",
    load=causal_lm.load,
    train=causal_lm.train,
    scorer=scorer,
    preflight=causal_lm.preflight,
    fixed_scorer=fixed_scorer,
)
