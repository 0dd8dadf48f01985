"""The initializer registry: name -> function(base_layer, rank, dtype, **args) -> {"lora_A", "lora_B"}.

An initializer returns the two LoRA factors of the *effective* initial update: the adapted layer starts
as W + lora_B @ lora_A, whatever `lora_alpha` and `r` are (`sft.initialization.apply` divides B by PEFT's
scaling factor alpha/r so that this holds). Shapes: lora_A (rank, in_features), lora_B (out_features, rank).

Register a new method with `@register_initializer("name")`; the name becomes valid in
`lora.init_lora_weights` as soon as the module defining it is imported (the built-in methods live in
`sft.initialization.methods`). This module imports no heavy library so configs validate instantly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sft.registry import lookup, registrar

Initializer = Callable[..., dict[str, Any]]

INITIALIZERS: dict[str, Initializer] = {}
register_initializer = registrar(INITIALIZERS, "initializer")


def get_initializer(name: str) -> Initializer:
    """The registered initializer `name`; a KeyError listing the available ones otherwise."""
    return lookup(INITIALIZERS, name, "initializer")
