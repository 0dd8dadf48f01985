"""The fast engine behind `sft.scoring.label_scoring.label_logprobs`: every label's log-likelihood for about the cost of
one forward pass over the prompts.

Per batch of prompts:
1. the prompt tokens shared by every prompt (instruction, fixed in-context examples) are run once, with
   batch size 1, and their KV cache is broadcast over the batch;
2. one forward over the rest of each prompt (left padded; a 4D attention mask skips the padding between
   the shared prefix and each suffix; position ids count real tokens only, as in an unpadded run) keeps
   the logits of the last position only: they score every label's first token;
3. the labels' token sequences form a trie; its inner nodes (every proper prefix of a label) are appended
   once per prompt after the prompt's KV cache, each node attending to its prompt and to its ancestors
   in the trie, and their logits score every later label token. Large tries are processed in chunks; the
   cache is cropped back to the prompt after each chunk, so no label ever copies the prompt's cache.

A prompt-learning adapter (prompt or prefix tuning) puts the same learned virtual tokens before every
sequence: their keys and values are computed once (`virtual_prefix`) and every forward runs the base model
after them, at positions shifted by their count, exactly as PEFT's own forward places them.

Labels are tokenized as they follow each prompt (see `sft.scoring.label_tokens.split_continuation`). When a label merges
with the prompt's last tokens, that prompt's context is cut where its earliest label starts, and the cut
prompt tokens become unscored tokens at the top of that prompt's label sequences, so the trie holds them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from sft.scoring.label_tokens import common_prefix_length

log = logging.getLogger(__name__)

# Attention implementations that take a custom 4D float mask.
MASKABLE_ATTENTION = ("eager", "sdpa")
# A shared prefix shorter than this is not worth a separate forward.
MIN_SHARED_PREFIX = 8
# Logit elements (batch x trie nodes x vocabulary) materialized by one trie chunk.
LOGIT_BUDGET = 1 << 26


@dataclass
class PromptPlan:
    """What to run for one prompt: the context tokens, then per label the tokens after that context and
    the index in them where the label itself (the scored part) begins."""

    context: list[int]
    sequences: list[tuple[int, ...]]
    offsets: list[int]


def plan_prompt(context_and_labels: list[tuple[list[int], list[int]]]) -> PromptPlan:
    """Combine the (context ids, label ids) splits of one prompt with each of its labels."""
    cut = min(len(context) for context, _ in context_and_labels)
    sequences, offsets = [], []
    for context, label in context_and_labels:
        sequences.append(tuple(context[cut:] + label))
        offsets.append(len(context) - cut)
    return PromptPlan(context_and_labels[0][0][:cut], sequences, offsets)


def supports_tree_attention(model: Any) -> bool:
    implementation = getattr(model.config, "_attn_implementation", None) or "eager"
    return implementation in MASKABLE_ATTENTION


def _mask_dtype(model: Any) -> torch.dtype:
    # The embeddings keep the compute dtype even when the linear layers are quantized.
    return model.get_input_embeddings().weight.dtype


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # A finite minimum (not -inf): a row with nothing allowed (a padding query) stays finite.
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)


def virtual_prefix(model: Any) -> tuple[Any, list[tuple[torch.Tensor, torch.Tensor]] | None]:
    """(the model the scorer runs, the per-layer keys and values of its virtual tokens with batch size 1):
    for a PEFT prompt-learning model the base model and its virtual tokens' cache (prompt tuning: the base
    model run over the learned embeddings; prefix tuning: the learned keys and values themselves), else
    (`model`, None)."""
    active = getattr(model, "active_peft_config", None)
    if not getattr(active, "is_prompt_learning", False):
        return model, None
    base = model.get_base_model()
    prompt = model.get_prompt(batch_size=1)
    if isinstance(prompt, torch.Tensor):  # prompt tuning: embeddings of the virtual tokens
        count = prompt.shape[1]
        output = base(
            inputs_embeds=prompt.to(_mask_dtype(base)), position_ids=torch.arange(count)[None].to(prompt.device),
            use_cache=True,
        )  # fmt: skip
        prompt = output.past_key_values
    return base, [(layer.keys, layer.values) for layer in prompt.layers]


class TrieScorer:
    """Scores the planned prompts of one `label_logprobs` call; see the module docstring."""

    def __init__(
        self,
        model: Any,
        pad_id: int,
        shared_prefix: bool = True,
        trie_chunk: int | None = None,
    ):
        self.model, self.virtual = virtual_prefix(model)
        # positions and mask columns the virtual tokens take before every sequence
        self.offset = self.virtual[0][0].shape[2] if self.virtual is not None else 0
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.dtype = _mask_dtype(model)
        self.use_shared_prefix = shared_prefix
        self.trie_chunk = trie_chunk
        self.prefix: list[int] = []
        self.prefix_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def _cache(self, batch: int, layers: list[tuple[torch.Tensor, torch.Tensor]] | None) -> Any:
        """A cache holding `layers` (batch size 1) viewed across `batch` rows, or None."""
        if layers is None:
            return None
        # expand() views the one-prompt cache across the batch without copying it
        return DynamicCache(ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
                                            for k, v in layers])  # fmt: skip

    def _forward(self, input_ids: torch.Tensor, allowed: torch.Tensor, positions: torch.Tensor, **kwargs: Any) -> Any:
        if self.offset:  # every query also sees the virtual tokens, which sit before position 0
            allowed = torch.cat([allowed.new_ones(*allowed.shape[:-1], self.offset), allowed], dim=-1)
            positions = positions + self.offset
            if kwargs.get("past_key_values") is None:
                kwargs["past_key_values"] = self._cache(input_ids.shape[0], self.virtual)
        return self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=_additive(allowed, self.dtype)[:, None].to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            **kwargs,
        )

    def prepare_prefix(self, plans: list[PromptPlan]) -> None:
        """Run the tokens every prompt starts with once (keeping at least one token of each prompt apart,
        whose logits score the labels' first tokens)."""
        if not self.use_shared_prefix or len(plans) < 2:
            return
        first = plans[0].context
        length = min(len(plan.context) for plan in plans) - 1
        for plan in plans[1:]:
            length = min(length, common_prefix_length(first[:length], plan.context))
        if length < MIN_SHARED_PREFIX:
            return
        self.prefix = first[:length]
        ids = torch.tensor([self.prefix])
        allowed = torch.ones(1, length, length, dtype=torch.bool).tril_()
        output = self._forward(ids, allowed, torch.arange(length)[None], logits_to_keep=1)
        # with virtual tokens, the cache holds them first: `_forward` then adds no second copy
        self.prefix_cache = [(layer.keys, layer.values) for layer in output.past_key_values.layers]

    def score_batch(self, plans: list[PromptPlan]) -> list[list[tuple[list[float], int]]]:
        """Per prompt, per label: (log-probabilities of the label's tokens, their count)."""
        batch = len(plans)
        shared = len(self.prefix) if self.prefix_cache is not None else 0
        suffixes = [plan.context[shared:] for plan in plans]
        width = max(len(suffix) for suffix in suffixes)
        ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        real = torch.zeros(batch, shared + width, dtype=torch.bool)
        real[:, :shared] = True
        for row, suffix in enumerate(suffixes):  # left padding: every last token sits at the same column
            ids[row, width - len(suffix) :] = torch.tensor(suffix)
            real[row, shared + width - len(suffix) :] = True
        causal = torch.ones(width, shared + width, dtype=torch.bool).tril_(diagonal=shared)
        allowed = real[:, None, :] & causal[None]
        # positions count real tokens only, so they equal those of an unpadded run
        positions = (shared + real[:, shared:].long().cumsum(-1) - 1).clamp_(min=0)
        cache = self._cache(batch, self.prefix_cache)
        output = self._forward(ids, allowed, positions, past_key_values=cache, logits_to_keep=1)
        first = torch.log_softmax(output.logits[:, -1].float(), dim=-1).cpu()
        trie = Trie(plans)
        node_logprobs = self._score_trie(trie, output.past_key_values, real, [len(plan.context) for plan in plans])
        starts = sorted({(row, plan.sequences[l][0]) for row, plan in enumerate(plans)
                         for l, offset in enumerate(plan.offsets) if offset == 0})  # fmt: skip
        rows, tokens = (torch.tensor(column) for column in zip(*starts))
        first_logprobs = dict(zip(starts, first[rows, tokens].tolist()))
        results = []
        for row, plan in enumerate(plans):
            per_label = []
            for sequence, offset in zip(plan.sequences, plan.offsets):
                values = [first_logprobs[(row, sequence[0])]] if offset == 0 else []
                values += [
                    node_logprobs[(row, trie.index[sequence[:k]], sequence[k])]
                    for k in range(max(offset, 1), len(sequence))
                ]
                per_label.append((values, len(sequence) - offset))
            results.append(per_label)
        return results

    def _score_trie(
        self, trie: Trie, cache: Any, real: torch.Tensor, lengths: list[int]
    ) -> dict[tuple[int, int, int], float]:
        """{(row, node, next token): log-probability} for every label token read from a trie node."""
        found: dict[tuple[int, int, int], float] = {}
        if not trie.nodes:
            return found
        batch, past = real.shape
        vocab = self.model.get_output_embeddings().weight.shape[0]
        chunk = self.trie_chunk or max(1, LOGIT_BUDGET // (batch * vocab))
        lengths_tensor = torch.tensor(lengths)
        for start in range(0, len(trie.nodes), chunk):
            owned = range(start, min(start + chunk, len(trie.nodes)))
            nodes = trie.closure(owned)  # ancestors from earlier chunks are recomputed, not cached
            local = {node: i for i, node in enumerate(nodes)}
            ancestry = torch.zeros(len(nodes), len(nodes), dtype=torch.bool)
            for i, node in enumerate(nodes):
                for ancestor in trie.ancestors[node]:
                    ancestry[i, local[ancestor]] = True
            allowed = torch.cat(
                [real[:, None, :].expand(batch, len(nodes), past), ancestry[None].expand(batch, -1, -1)], dim=-1
            )
            depths = torch.tensor([len(trie.nodes[node]) for node in nodes])
            positions = lengths_tensor[:, None] + depths[None] - 1
            ids = torch.tensor([trie.nodes[node][-1] for node in nodes])[None].expand(batch, -1)
            output = self._forward(ids, allowed, positions, past_key_values=cache, logits_to_keep=0)
            cache.crop(-len(nodes))
            wanted = [
                (row, node, token)
                for node in owned
                for row, tokens in enumerate(trie.children[node])
                for token in tokens
            ]
            if not wanted:
                continue
            rows = torch.tensor([row for row, _, _ in wanted])
            columns = torch.tensor([local[node] for _, node, _ in wanted])
            tokens = torch.tensor([token for _, _, token in wanted])
            logits = output.logits[rows.to(self.device), columns.to(self.device)].float()
            values = logits.gather(1, tokens.to(self.device)[:, None])[:, 0] - logits.logsumexp(dim=-1)
            found.update(zip(wanted, values.cpu().tolist()))
        return found


class Trie:
    """The union, over a batch's prompts, of the proper prefixes of their label sequences.

    Nodes are sorted lexicographically, so every ancestor precedes its descendants. `children[node][row]`
    holds the tokens that row needs scored after that node (rows may differ when labels merge with their
    prompt's end; a row simply ignores the nodes it does not use).
    """

    def __init__(self, plans: list[PromptPlan]):
        prefixes = {sequence[:k] for plan in plans for sequence in plan.sequences for k in range(1, len(sequence))}
        self.nodes: list[tuple[int, ...]] = sorted(prefixes)
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self.ancestors = [[self.index[node[:k]] for k in range(1, len(node) + 1)] for node in self.nodes]
        self.children: list[list[set[int]]] = [[set() for _ in plans] for _ in self.nodes]
        for row, plan in enumerate(plans):
            for sequence, offset in zip(plan.sequences, plan.offsets):
                for k in range(max(offset, 1), len(sequence)):
                    self.children[self.index[sequence[:k]]][row].add(sequence[k])

    def closure(self, owned: range) -> list[int]:
        """The owned nodes and every ancestor they need, in trie order."""
        return sorted({ancestor for node in owned for ancestor in self.ancestors[node]})
