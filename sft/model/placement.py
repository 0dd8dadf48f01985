"""`model.model_args.parallelize: true`: spread a model that does not fit one GPU over every visible GPU.

accelerate balances the memory of the visible devices (`get_balanced_memory`) and assigns whole modules
to them (`infer_auto_device_map`), never splitting a module listed in `no_split_module_classes` (the
model's own `_no_split_modules` by default: its decoder layers, whose residual connections must stay
on one device). The map is computed on an empty (meta) copy of the model, so nothing is loaded twice.
With no GPU the only device is the CPU and the same code path places everything there.
"""

from __future__ import annotations

import logging
from typing import Any

from accelerate import infer_auto_device_map, init_empty_weights
from accelerate.utils import get_balanced_memory
from transformers import AutoConfig, AutoModelForCausalLM

from sft.config import ModelConfig
from sft.model.quantization import memory_dtype

log = logging.getLogger(__name__)


def balanced_device_map(
    config: ModelConfig,
    dtype: Any,
    no_split: list[str] | None = None,
    model_class: Any = None,
    config_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A device map that balances `config`'s model over the visible GPUs (or puts it on the CPU). The empty
    model is built from the class that will be loaded (`model_class`, e.g. a sequence classifier, with
    `config_args` such as num_labels), so the map names that class's modules (its head, not lm_head)."""
    model_config = AutoConfig.from_pretrained(
        config.name, revision=config.revision, trust_remote_code=config.trust_remote_code, **(config_args or {})
    )
    with init_empty_weights():
        empty = (model_class or AutoModelForCausalLM).from_config(
            model_config, trust_remote_code=config.trust_remote_code
        )
    no_split = list(no_split if no_split is not None else (getattr(empty, "_no_split_modules", None) or []))
    if dtype == "auto":  # the checkpoint's dtype
        dtype = getattr(model_config, "dtype", None)
    storage = memory_dtype(config.quantization, dtype)
    max_memory = get_balanced_memory(empty, no_split_module_classes=no_split, dtype=storage)
    device_map = dict(
        infer_auto_device_map(empty, max_memory=max_memory, no_split_module_classes=no_split, dtype=storage)
    )
    log.info("Placing %s over %s (no split: %s)", config.name, sorted({str(d) for d in device_map.values()}), no_split)
    return device_map
