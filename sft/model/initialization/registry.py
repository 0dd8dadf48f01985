"""The initializer registry: name -> function(base_layer, rank, dtype, **args) -> {"lora_A", "lora_B"}.

An initializer returns the two LoRA factors of the *effective* initial update: the adapted layer starts
as W + lora_B @ lora_A, whatever `lora_alpha` and `r` are (`sft.model.initialization.apply` divides B by
PEFT's scaling factor alpha/r so that this holds). Shapes: lora_A (rank, in_features), lora_B
(out_features, rank).

The built-in methods are listed here by name and imported from `sft.model.initialization.methods` on
first use, so `lora.init_lora_weights` is checked without importing torch. Register a new method with
`@register_initializer("name")`; the name becomes valid as soon as the module defining it is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sft.registry import Registry

Initializer = Callable[..., dict[str, Any]]

INITIALIZERS = Registry("initializer")
for _name in ("pca", "pissa", "umap"):
    INITIALIZERS.add(_name, f"sft.model.initialization.methods:{_name}")

register_initializer = INITIALIZERS.register


def get_initializer(name: str) -> Initializer:
    """The registered initializer `name`; a KeyError listing the available ones otherwise."""
    return INITIALIZERS.get(name)
