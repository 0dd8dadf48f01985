"""Write an sft initializer's factors into the LoRA layers of a PEFT model.

The adapted layers are found through PEFT (every `peft.tuners.lora.LoraLayer` in `model.named_modules()`),
never through architecture-specific paths, so any model PEFT can adapt works, quantized or not.

Scaling: PEFT computes base(x) + scaling * lora_B(lora_A(x)) with scaling = lora_alpha / r (or
lora_alpha / sqrt(r) with rsLoRA). An initializer returns the factors of the effective update B A, so
lora_B is divided by the layer's scaling and lora_A is kept as the method defines it (pca's orthonormal
rows, pissa's sqrt(S_r) V_r^T): scaling * (B / scaling) A = B A. For pissa that makes the initial
update exactly W_r for every lora_alpha.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import torch
from peft.tuners.lora import LoraLayer

from sft.config import ModelConfig
from sft.model.initialization.cache import InitializationCache, default_folder, weight_digest
from sft.model.initialization.registry import get_initializer

log = logging.getLogger(__name__)


def record(method: str, examples: int | None, from_cache: bool, seconds: float, layers: int) -> dict[str, Any]:
    """What results.json records of an initialization (`sft.results.run_record.InitializationRecord`)."""
    return {"method": method, "examples": examples, "from_cache": from_cache, "seconds": seconds, "layers": layers}


def checkpoint_key(config: ModelConfig) -> dict[str, Any]:
    """What identifies the weights an initializer reads: the checkpoint and how it was quantized."""
    quantization = config.quantization.model_dump() if config.quantization is not None else None
    return {"model": config.name, "revision": config.revision, "quantization": quantization}


def lora_layers(model: Any, adapter_name: str = "default") -> list[tuple[str, Any]]:
    """(name, layer) of every LoRA layer of `model` that carries `adapter_name`."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        if adapter_name in module.lora_A:
            found.append((name, module))
        elif adapter_name in getattr(module, "lora_embedding_A", {}):
            raise ValueError(
                f"{name}: sft initializers adapt linear layers only; remove embedding layers from lora.target_modules"
            )
    return found


def apply_initializer(
    model: Any,
    method: str,
    init_args: dict[str, Any] | None = None,
    model_key: dict[str, Any] | None = None,
    cache_folder: Path | str | bool | None = True,
    adapter_name: str = "default",
) -> dict[str, Any]:
    """Initialize every LoRA layer of `model` with `method`; return statistics (layers, cache hits, seconds).

    `model_key` identifies the checkpoint in the cache (name, revision, quantization); `cache_folder=True`
    uses the default folder (`$SFT_INIT_CACHE`), None or False turns caching off."""
    initializer = get_initializer(method)
    init_args = dict(init_args or {})
    folder = default_folder() if cache_folder is True else (cache_folder or None)
    cache = InitializationCache(folder)
    layers = lora_layers(model, adapter_name)
    if not layers:
        raise ValueError(f"the model has no LoRA layers with adapter {adapter_name!r} to initialize")
    start = time.perf_counter()
    for name, layer in layers:
        base = layer.get_base_layer()
        lora_a = layer.lora_A[adapter_name].weight
        lora_b = layer.lora_B[adapter_name].weight
        rank = layer.r[adapter_name]
        key = {
            **(model_key or {}),
            "layer": name,
            "shape": [lora_b.shape[0], lora_a.shape[1]],
            "weight": weight_digest(base) if cache.folder is not None else None,
            "rank": rank,
            "method": method,
            "args": init_args,
        }
        factors = cache.get_or_compute(key, functools.partial(initializer, base, rank, torch.float32, **init_args))
        new_a, new_b = factors["lora_A"], factors["lora_B"]
        if tuple(new_a.shape) != tuple(lora_a.shape) or tuple(new_b.shape) != tuple(lora_b.shape):
            raise ValueError(
                f"{name}: initializer {method!r} returned lora_A {tuple(new_a.shape)} and lora_B "
                f"{tuple(new_b.shape)}; the layer needs {tuple(lora_a.shape)} and {tuple(lora_b.shape)}"
            )
        if layer.use_dora.get(adapter_name) and bool(new_b.abs().max() > 0):
            raise ValueError(f"{name}: {method!r} starts with B != 0, which DoRA's magnitude vector does not follow")
        scaling = layer.scaling[adapter_name]
        with torch.no_grad():
            lora_a.copy_(new_a.to(device=lora_a.device, dtype=torch.float32).to(lora_a.dtype))
            lora_b.copy_((new_b.to(device=lora_b.device, dtype=torch.float32) / scaling).to(lora_b.dtype))
    seconds = time.perf_counter() - start
    log.info(
        "Initialized %d LoRA layers with %s in %.1fs (%d from the cache)", len(layers), method, seconds, cache.hits
    )
    return {"layers": len(layers), "cache_hits": cache.hits, "computed": cache.misses, "seconds": seconds}


def apply_configured_initializer(model: Any, config: Any) -> dict[str, Any] | None:
    """Apply `config.lora.init_lora_weights` when it names an sft initializer (the LoRA layers were built
    with PEFT's default init); call it before the optimizer exists. `config` is an ExperimentConfig. What
    results.json records of it (`sft.results.run_record.InitializationRecord`), or None without one."""
    lora = config.lora
    if lora is None or not lora.custom_initializer:
        return None
    stats = apply_initializer(model, lora.custom_initializer, lora.init_args, checkpoint_key(config.model))
    # computed from the weights alone: no training example read
    return record(lora.custom_initializer, None, stats["computed"] == 0, stats["seconds"], stats["layers"])
