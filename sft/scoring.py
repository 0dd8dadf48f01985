"""Classification by label log-likelihood.

`label_logprobs` returns log p(label tokens | prompt): log-softmax over the vocabulary at every label
position, summed over the label's tokens. Labels are tokenized as they follow the prompt (the prompt
and prompt + label are tokenized together and split where they diverge), which is how the model saw
them in training. This is the exact reference semantics; a faster engine must match it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def split_continuation(tokenizer: Any, prompt: str, label: str) -> tuple[list[int], list[int]]:
    """(context ids, label ids) with context + label == the tokens of `prompt + label`."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + label, add_special_tokens=False)["input_ids"]
    # Tokens may merge across the boundary; the label then starts where the two tokenizations diverge.
    start = common_prefix_length(prompt_ids, full_ids)
    if start == 0:
        raise ValueError("the prompt is empty or merges entirely with the label; a prompt needs a context token")
    if start == len(full_ids):
        raise ValueError(f"label {label!r} adds no tokens after the prompt")
    return full_ids[:start], full_ids[start:]


@torch.inference_mode()
def label_logprobs(
    model: Any, tokenizer: Any, prompts: list[str], labels: list[str], batch_size: int = 8
) -> torch.Tensor:
    """Summed log-probabilities of every label after every prompt, shape (len(prompts), len(labels))."""
    pairs = []  # (prompt index, label index, token ids, index of the first label token)
    for p, prompt in enumerate(prompts):
        for l, label in enumerate(labels):
            context, continuation = split_continuation(tokenizer, prompt, label)
            pairs.append((p, l, context + continuation, len(context)))
    # Similar lengths together waste less padding.
    pairs.sort(key=lambda pair: len(pair[2]))
    scores = torch.empty(len(prompts), len(labels), dtype=torch.float64)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        width = max(len(ids) for _, _, ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, _, ids, _) in enumerate(batch):  # right padding keeps positions 0..n-1
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        for row, (p, l, ids, first) in enumerate(batch):
            # the token at position t is predicted by the logits at position t - 1
            logprobs = torch.log_softmax(logits[row, first - 1 : len(ids) - 1].float(), dim=-1)
            targets = torch.tensor(ids[first:], device=logprobs.device)
            scores[p, l] = logprobs.gather(1, targets[:, None]).sum().double().cpu()
    return scores.float()
