"""The tokens of a label as it follows a prompt.

A label is tokenized together with the prompt before it: the prompt and prompt + label are tokenized
and split where the two token sequences diverge, because tokens may merge across the boundary. That
is how the model saw the label in training, so its log-likelihood is measured on the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def _split(prompt_ids: list[int], full_ids: list[int], label: str) -> tuple[list[int], list[int]]:
    # Tokens may merge across the boundary; the label then starts where the two tokenizations diverge.
    start = common_prefix_length(prompt_ids, full_ids)
    if start == 0:
        raise ValueError("the prompt is empty or merges entirely with the label; a prompt needs a context token")
    if start == len(full_ids):
        raise ValueError(f"label {label!r} adds no tokens after the prompt")
    return full_ids[:start], full_ids[start:]


def split_continuation(tokenizer: Any, prompt: str, label: str) -> tuple[list[int], list[int]]:
    """(context ids, label ids) with context + label == the tokens of `prompt + label`."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + label, add_special_tokens=False)["input_ids"]
    return _split(prompt_ids, full_ids, label)


def split_all(tokenizer: Any, prompts: list[str], labels: list[str]) -> list[list[tuple[list[int], list[int]]]]:
    """`split_continuation` for every (prompt, label), in batched tokenizer calls."""
    split = _split_after_special_tokens(tokenizer, prompts, labels)
    if split is not None:
        return split
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer([prompt + label for prompt in prompts for label in labels], add_special_tokens=False)
    full_ids = full_ids["input_ids"]
    return [
        [_split(prompt_ids[p], full_ids[p * len(labels) + l], label) for l, label in enumerate(labels)]
        for p in range(len(prompts))
    ]


def _split_after_special_tokens(
    tokenizer: Any, prompts: list[str], labels: list[str]
) -> list[list[tuple[list[int], list[int]]]] | None:
    """The same splits with a fraction of the tokenization: a fast tokenizer cuts the text at special tokens
    before it tokenizes, so prompt + label tokenizes as the prompt's tokens up to its last special token
    followed by the tokens of (the text after it + label). Chat prompts end alike after their last special
    token, so each distinct tail + label is tokenized once instead of once per prompt. The premise is
    checked on every prompt and, for every distinct tail, on one full prompt + label; None (tokenize
    everything) when a check fails or a prompt has no special token."""
    if not getattr(tokenizer, "is_fast", False) or not prompts:
        return None
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    encoded = tokenizer(prompts, add_special_tokens=False, return_offsets_mapping=True)
    prompt_ids, heads, tails = encoded["input_ids"], [], []
    for prompt, ids, offsets in zip(prompts, prompt_ids, encoded["offset_mapping"]):
        last = max((i for i, token in enumerate(ids) if token in special), default=None)
        if last is None:
            return None
        heads.append(ids[: last + 1])
        tails.append(prompt[offsets[last][1] :])
    distinct = list(dict.fromkeys(tails))
    tail_ids = dict(zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"]))
    if any(head + tail_ids[tail] != ids for head, tail, ids in zip(heads, tails, prompt_ids)):
        return None
    texts = [tail + label for tail in distinct for label in labels]
    continued = dict(zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"]))
    first_prompt = {tail: tails.index(tail) for tail in distinct}
    checks = [(p, label) for p in first_prompt.values() for label in labels]
    full = tokenizer([prompts[p] + label for p, label in checks], add_special_tokens=False)["input_ids"]
    if any(ids != heads[p] + continued[tails[p] + label] for ids, (p, label) in zip(full, checks)):
        return None
    return [
        [_split(prompt_ids[p], heads[p] + continued[tails[p] + label], label) for label in labels]
        for p in range(len(prompts))
    ]
