"""Classification by label log-likelihood.

`label_logprobs` returns log p(label tokens | prompt): log-softmax over the vocabulary at every label
position, summed over the label's tokens. Labels are tokenized as they follow the prompt
(`sft.scoring.label_tokens`), which is how the model saw them in training. `brute_force_logprobs`
computes exactly that with one forward per (prompt, label); `label_logprobs` gets the same numbers
from one pass over the prompts (`sft.scoring.trie`).
`classification_scores` applies the configured normalization (sum, mean, per_char, pmi).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from sft.scoring.label_tokens import split_all
from sft.scoring.trie import TrieScorer, plan_prompt, supports_tree_attention

if TYPE_CHECKING:
    from sft.config import InferenceConfig

log = logging.getLogger(__name__)

# The input of the content-free prompt that `pmi` normalization scores labels under.
CONTENT_FREE_INPUT = "N/A"


@dataclass
class LabelScores:
    """Summed log-probabilities and the number of label tokens behind each, both (prompts, labels)."""

    sums: torch.Tensor
    counts: torch.Tensor


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


@torch.inference_mode()
def brute_force_logprobs(
    model: Any, tokenizer: Any, prompts: list[str], labels: list[str], batch_size: int = 8
) -> torch.Tensor:
    """The reference: one full forward per (prompt + label), `batch_size` sequences per call."""
    pairs = []  # (prompt index, label index, token ids, index of the first label token)
    for p, splits in enumerate(split_all(tokenizer, prompts, labels)):
        for l, (context, continuation) in enumerate(splits):
            pairs.append((p, l, context + continuation, len(context)))
    # Similar lengths together waste less padding.
    pairs.sort(key=lambda pair: len(pair[2]))
    scores = torch.empty(len(prompts), len(labels), dtype=torch.float64)
    device = next(model.parameters()).device
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        width = max(len(ids) for _, _, ids, _ in batch)
        input_ids = torch.full((len(batch), width), _pad_id(tokenizer), dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, _, ids, _) in enumerate(batch):  # right padding keeps positions 0..n-1
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        # a prompt-tuning model returns logits for its virtual tokens too, before the sequence's own
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits[:, -width:]
        for row, (p, l, ids, first) in enumerate(batch):
            # the token at position t is predicted by the logits at position t - 1
            logprobs = torch.log_softmax(logits[row, first - 1 : len(ids) - 1].float(), dim=-1)
            targets = torch.tensor(ids[first:], device=logprobs.device)
            scores[p, l] = logprobs.gather(1, targets[:, None]).sum().double().cpu()
    return scores.float()


@torch.inference_mode()
def score_labels(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    labels: list[str],
    batch_size: int = 8,
    shared_prefix: bool = True,
    trie_chunk: int | None = None,
) -> LabelScores:
    """Every label's summed log-probability after every prompt, from one pass over the prompts.

    `batch_size` prompts per forward; `shared_prefix` runs the tokens all prompts start with once;
    `trie_chunk` caps the label-trie nodes per extra forward (default: from a logits memory budget).
    """
    if not prompts or not labels:
        return LabelScores(torch.empty(len(prompts), len(labels)), torch.empty(len(prompts), len(labels)))
    splits = split_all(tokenizer, prompts, labels)
    counts = torch.tensor([[len(label) for _, label in row] for row in splits], dtype=torch.long)
    if not supports_tree_attention(model):
        log.warning(
            "Attention implementation %r takes no custom 4D mask: scoring labels by brute force "
            "(one forward per prompt and label); use attn_implementation 'sdpa' or 'eager' for one-pass scoring",
            model.config._attn_implementation,
        )
        return LabelScores(brute_force_logprobs(model, tokenizer, prompts, labels, batch_size), counts)
    plans = [plan_prompt(row) for row in splits]
    scorer = TrieScorer(model, _pad_id(tokenizer), shared_prefix=shared_prefix, trie_chunk=trie_chunk)
    scorer.prepare_prefix(plans)
    sums = torch.empty(len(prompts), len(labels), dtype=torch.float64)
    # Similar lengths together waste less padding.
    order = sorted(range(len(plans)), key=lambda p: len(plans[p].context))
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        for p, per_label in zip(indices, scorer.score_batch([plans[p] for p in indices])):
            sums[p] = torch.tensor([sum(values) for values, _ in per_label], dtype=torch.float64)
    return LabelScores(sums.float(), counts)


def label_logprobs(
    model: Any, tokenizer: Any, prompts: list[str], labels: list[str], batch_size: int = 8, **options: Any
) -> torch.Tensor:
    """Summed log-probabilities of every label after every prompt, shape (len(prompts), len(labels));
    equal to `brute_force_logprobs`. `options` go to `score_labels`."""
    return score_labels(model, tokenizer, prompts, labels, batch_size, **options).sums


def normalize(scores: LabelScores, labels: list[str], normalization: str, content_free: torch.Tensor | None = None):
    """Scores to compare labels by: `sum` (log-likelihood), `mean` (per label token), `per_char` (per
    character of the label) or `pmi` (minus the label's log-likelihood after a content-free prompt)."""
    if normalization == "sum":
        return scores.sums
    if normalization == "mean":
        return scores.sums / scores.counts
    if normalization == "per_char":
        return scores.sums / torch.tensor([len(label) for label in labels], dtype=scores.sums.dtype)
    if normalization == "pmi":
        if content_free is None:
            raise ValueError("normalization 'pmi' needs the label scores under a content-free prompt")
        return scores.sums - content_free.reshape(1, -1)
    raise ValueError(f"unknown normalization {normalization!r}; choose sum, mean, per_char or pmi")


def content_free_prompt(builder: Any, sampler: Any, input_columns: list[str], inference: InferenceConfig) -> str | None:
    """For `pmi`: the inference prompt with every input set to "N/A" and the in-context examples of the
    first test prompt (all of them when `icl_fixed`); None for the other normalizations."""
    if inference.normalization != "pmi":
        return None
    empty = {column: CONTENT_FREE_INPUT for column in input_columns}
    return builder.prompt(empty, sampler.sample(inference.icl_examples, key=0))


def classification_scores(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    labels: list[str],
    inference: InferenceConfig,
    content_free_prompt: str | None = None,
) -> torch.Tensor:
    """(prompts, labels) scores under `inference.normalization`; softmax gives the label probabilities.
    `pmi` needs `content_free_prompt` (the prompt template around an empty input), scored once."""
    scores = score_labels(model, tokenizer, prompts, labels, inference.batch_size)
    content_free = None
    if inference.normalization == "pmi":
        if content_free_prompt is None:
            raise ValueError("normalization 'pmi' needs a content-free prompt")
        content_free = score_labels(model, tokenizer, [content_free_prompt], labels).sums[0]
    return normalize(scores, labels, inference.normalization, content_free)
