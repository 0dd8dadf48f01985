"""The weight of a (possibly quantized) linear layer as a float32 tensor of shape (out_features, in_features).

Initializers compute SVDs and embeddings of W, so they need W itself, not its packed storage:

- plain `nn.Linear` (and transformers' `Conv1D`, whose weight is stored transposed);
- bitsandbytes `Linear8bitLt`: int8 rows with one absmax scale per output row (SCB): W = CB * SCB / 127;
- bitsandbytes `Linear4bit` (nf4 and fp4): `bitsandbytes.functional.dequantize_4bit` with the layer's quant state;
  bitsandbytes >= 0.49 on a CPU with AVX512-BF16 repacks the weight in place at the layer's first inference
  forward (`packing_format_for_cpu`), which `dequantize_4bit` cannot read: that layout is unpacked here;
- AWQ GEMM packing (AutoAWQ checkpoints, loaded by GPT-QModel in transformers 5): eight 4-bit values per
  int32 along the output dimension in AWQ's interleaved order, per-group zeros packed the same way and
  per-group scales: W^T = (q - z) * s;
- GPTQ packing: 32/bits values per int32 along the input dimension in sequential order, zeros packed along
  the output dimension, `g_idx` mapping each input row to its group. In-memory zeros follow GPT-QModel's
  "v2" convention (no +1 offset; v1 checkpoints are converted when loaded), `zero_offset=1` reads raw v1.

Unpacking is pure torch (no kernel package is needed to read a packed weight).
"""

from __future__ import annotations

from typing import Any

import torch

# Nibble i of an AWQ-packed int32 holds output column AWQ_ORDER[i] of its block of eight.
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def dequantize_weight(layer: Any) -> Any:
    """W of `layer` in float32, shape (out_features, in_features), on the layer's device."""
    if all(hasattr(layer, name) for name in ("qweight", "qzeros", "scales")):
        return _packed_weight(layer)
    weight = getattr(layer, "weight", None)
    if weight is None:
        raise TypeError(f"cannot read the weight of a {type(layer).__name__}: it has no weight or qweight")
    if getattr(weight, "quant_state", None) is not None:  # bitsandbytes Params4bit
        if getattr(weight.quant_state, "packing_format_for_cpu", False):
            return _cpu_packed_4bit(weight.data, weight.quant_state)
        import bitsandbytes.functional as bnb_functional

        return bnb_functional.dequantize_4bit(weight.data, weight.quant_state).float()
    if weight.dtype == torch.int8:  # bitsandbytes Int8Params: int8 rows, absmax per row in SCB
        scales = getattr(weight, "SCB", None)
        if scales is None:
            state = getattr(layer, "state", None)
            scales = getattr(state, "SCB", None)
        if scales is None:
            raise TypeError(f"{type(layer).__name__}: int8 weight without its row scales (SCB)")
        return weight.data.float() * (scales.float().unsqueeze(1) / 127.0)
    if not weight.dtype.is_floating_point:
        raise TypeError(f"{type(layer).__name__}: don't know how to dequantize a {weight.dtype} weight")
    dense = weight.detach().float()
    if type(layer).__name__ == "Conv1D":  # transformers' GPT-2 style layer stores (in, out)
        dense = dense.t()
    return dense


def _cpu_packed_4bit(packed: Any, state: Any, block_n: int = 32) -> Any:
    """A Linear4bit weight in bitsandbytes' AVX512-BF16 CPU layout (`_convert_weight_packed_for_cpu`, 0.49+).

    packed (N, K/2) uint8: the codes of each block of `block_n` output rows by 2 input columns, 2 * block_n of
    them, are stored low nibbles first then high nibbles; absmax is (K / blocksize, N), bf16, no longer nested.
    """
    n, k = state.shape
    bytes_ = packed.view(torch.uint8).reshape(-1, block_n)
    codes = torch.cat([bytes_ & 0xF, bytes_ >> 4], dim=-1)
    codes = codes.reshape(n // block_n, k // 2, block_n, 2).transpose(1, 2).reshape(n, k)
    scales = state.absmax.float().t().repeat_interleave(state.blocksize, dim=1)[:, :k]
    return state.code.float()[codes.long()] * scales


def _packed_weight(layer: Any) -> Any:
    """AWQ or GPTQ, told apart by which dimension qweight packs (scales are always (groups, out))."""
    qweight, qzeros, scales = layer.qweight, layer.qzeros, layer.scales
    bits = int(getattr(layer, "bits", getattr(layer, "w_bit", 4)))
    out_features = scales.shape[1]
    if qweight.shape[1] * (32 // bits) == out_features and qweight.shape[1] != out_features:
        return unpack_awq(qweight, qzeros, scales, bits)
    if qweight.shape[1] == out_features:
        return unpack_gptq(qweight, qzeros, scales, getattr(layer, "g_idx", None), bits)
    raise TypeError(
        f"{type(layer).__name__}: qweight {tuple(qweight.shape)} fits neither AWQ nor GPTQ packing "
        f"for scales {tuple(scales.shape)}"
    )


def _unpack_int32(packed: Any, bits: int) -> Any:
    """(..., n) int32 -> (..., n, 32 // bits) values, the value in the lowest bits first."""
    shifts = torch.arange(0, 32, bits, device=packed.device, dtype=torch.int32)
    return (packed.to(torch.int32).unsqueeze(-1) >> shifts) & ((1 << bits) - 1)


def unpack_awq(qweight: Any, qzeros: Any, scales: Any, bits: int = 4) -> Any:
    """AWQ GEMM: qweight (in, out/8), qzeros (groups, out/8), scales (groups, out) -> W (out, in)."""
    if bits != 4:
        raise ValueError(f"AWQ packs 4-bit values; got bits={bits}")
    inverse = torch.tensor([AWQ_ORDER.index(k) for k in range(8)], device=qweight.device)

    def columns(packed: Any) -> Any:
        values = _unpack_int32(packed, bits)[..., inverse]  # back to column order within each block
        return values.reshape(packed.shape[0], -1)

    q, zeros = columns(qweight), columns(qzeros)
    group_size = q.shape[0] // scales.shape[0]
    zeros = zeros.repeat_interleave(group_size, dim=0)
    expanded = scales.float().repeat_interleave(group_size, dim=0)
    return ((q - zeros).float() * expanded).t().contiguous()


def unpack_gptq(qweight: Any, qzeros: Any, scales: Any, g_idx: Any = None, bits: int = 4, zero_offset: int = 0) -> Any:
    """GPTQ: qweight (in*bits/32, out), qzeros (groups, out*bits/32), scales (groups, out) -> W (out, in)."""
    if 32 % bits:
        raise ValueError(f"GPTQ unpacking supports bits dividing 32 (2, 4, 8); got bits={bits}")
    # (in/p, out, p) -> (in/p, p, out) -> (in, out): values of one int32 are consecutive input rows
    q = _unpack_int32(qweight, bits).permute(0, 2, 1).reshape(-1, qweight.shape[1])
    zeros = _unpack_int32(qzeros, bits).reshape(qzeros.shape[0], -1) + zero_offset
    in_features = q.shape[0]
    if g_idx is None:
        g_idx = torch.arange(in_features, device=q.device) // (in_features // scales.shape[0])
    g_idx = g_idx.long()
    return ((q - zeros[g_idx]).float() * scales.float()[g_idx]).t().contiguous()
