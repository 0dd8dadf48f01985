"""How training batches are built, so no compute is spent on padding, and what that batching measured.

Few-shot examples vary 3-5x in length, so a padded batch spends a large share of every step on pad
positions. `training.batching: "fastest"` (the default) removes them:

- causal LM (`train_adapter`): TRL's padding-free collator concatenates a batch's examples into one row,
  with position ids restarting per example and the sequence boundaries (`cu_seq_lens_*`) beside them.
  Attention must never cross an example: flash-attention's variable-length kernels take the boundaries
  on a GPU where they are installed; otherwise `varlen_sdpa` (below) runs PyTorch's SDPA causally on
  each example's block of the row, which costs sum(L_i^2) instead of the (sum L_i)^2 of the
  block-diagonal mask transformers would build from the position ids for plain SDPA. Batches, their
  order and the loss (TRL's completion-only loss, summed over answer tokens and divided by their count)
  are those of the padded batches, so the adapter equals padded training's within float noise (LoRA
  dropout, when on, draws its masks per batch shape: then equal in distribution only).
  Gradient checkpointing (TRL's default) is off on CPU: it recomputes every forward to save memory a
  CPU has, at a third more compute per step.
- classification head (`train_head`): the head reads each example's last token, so examples cannot
  share a row; batches are length-grouped instead (transformers' `group_by_length`), which changes
  which examples share a batch and so the adapter (a different order, not float noise).

`"padded"` keeps the library defaults exactly (padded batches in random order, TRL's gradient
checkpointing), for reproducing an older run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

FASTEST, PADDED = "fastest", "padded"
VARLEN_SDPA = "sft_varlen_sdpa"  # the attention implementation name `varlen_sdpa` is registered under
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3")  # transformers' variable-length kernels

# What `batching_used` records in results.json (`training.batching_used`):
PADDING_FREE, LENGTH_GROUPED, PADDED_BATCHES = "padding_free", "length_grouped", "padded"


@dataclass(frozen=True)
class TokenCount:
    """One training batch: the tokens of its examples and the positions the model computed (pads included)."""

    tokens: int
    positions: int


def batch_tokens(inputs: dict[str, Any]) -> TokenCount:
    """Count a collated batch: a padded one's attention mask marks its tokens; a padding-free row has
    none and no pad (TRL pads it only to a multiple on accelerators that compile per shape)."""
    positions = int(inputs["input_ids"].numel())
    mask = inputs.get("attention_mask")
    return TokenCount(int(mask.sum()) if mask is not None else positions, positions)


@dataclass(frozen=True)
class Batching:
    """What a training used: `PADDING_FREE`, `LENGTH_GROUPED` or `PADDED_BATCHES`, and the attention
    implementation it trained with."""

    used: str
    attention: str | None


def counting_trainer(base: type) -> type:
    """`base` (a transformers Trainer class) counting the tokens and positions of every training batch
    in `token_counts` (evaluation batches, collated by the same collator, are not counted)."""

    class Counting(base):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.token_counts: list[TokenCount] = []

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if model.training:
                self.token_counts.append(batch_tokens(inputs))
            return super().compute_loss(model, inputs, *args, **kwargs)

    Counting.__name__ = Counting.__qualname__ = f"Counting{base.__name__}"
    return Counting


def throughput_stats(counts: list[TokenCount], seconds: float, batching: Batching) -> dict[str, Any]:
    """results.json's training statistics of the batching: tokens per second (the examples' tokens, not
    pads, over the training's wall time), the share of computed positions that were padding, and what
    was used."""
    tokens = sum(count.tokens for count in counts)
    positions = sum(count.positions for count in counts)
    return {
        "batching_used": batching.used,
        "attention": batching.attention,
        "train_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "padding_share": round(1 - tokens / positions, 4) if positions else None,
    }


def packed_attention(attention: str, half_on_gpu: bool, flash_installed: bool) -> str | None:
    """The attention implementation that takes padding-free rows for a model loaded with `attention`:
    itself when it is a flash-attention kernel or eager (transformers masks eager block-diagonally from
    the position ids); for SDPA, flash-attention 2 for a 16-bit model on a GPU where it is installed,
    else `varlen_sdpa`. None: an attention not known to take packed rows (e.g. a model's own code)."""
    if attention in (*FLASH_ATTENTION, "eager"):
        return attention
    if attention != "sdpa":
        return None
    return FLASH_ATTENTION[0] if half_on_gpu and flash_installed else VARLEN_SDPA


def padding_free_attention(model: Any, batching: str) -> str | None:
    """The attention `train_adapter` switches `model` to for padding-free rows under `batching`; None:
    padded batches (asked for, or the model's attention is not known to take packed rows)."""
    import torch

    if batching != FASTEST or not getattr(model, "_supports_attention_backend", False):
        return None
    half_on_gpu = model.device.type == "cuda" and model.dtype in (torch.float16, torch.bfloat16)
    chosen = packed_attention(model.config._attn_implementation, half_on_gpu, flash_attention_installed())
    if chosen == VARLEN_SDPA:
        register_varlen_sdpa()
    return chosen


def flash_attention_installed() -> bool:
    """Whether the flash-attention 2 package is importable (transformers' kernels need it)."""
    from transformers.utils import is_flash_attn_2_available

    return bool(is_flash_attn_2_available())


@contextmanager
def attention_of(model: Any, implementation: str | None) -> Iterator[None]:
    """Run the block with `model` on the attention `implementation` (None: as it is), then switch back:
    evaluation during padding-free training scores prompts on the attention the model was loaded with."""
    current = model.config._attn_implementation
    if implementation is None or implementation == current:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(current)


def register_varlen_sdpa() -> str:
    """Register `varlen_sdpa` with transformers' attention (and mask) interfaces; return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN_SDPA, sdpa_mask)
    return VARLEN_SDPA


def varlen_sdpa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """SDPA over a padding-free row, one causal block per example (the boundaries TRL's collator passes
    as `cu_seq_lens_q`): no attention crosses an example, and none is computed across one. Any other
    call (padded batches, generation, a sliding window) is plain SDPA with its mask."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or kwargs.get("sliding_window") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    edges = [int(edge) for edge in bounds.tolist()]
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    blocks = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
            enable_gqa=grouped,
        )
        for start, end in itertools.pairwise(edges)
        if end > start
    ]
    # (batch, heads, length, dim) -> (batch, length, heads, dim), as transformers' attention functions return
    return torch.cat(blocks, dim=2).transpose(1, 2).contiguous(), None
