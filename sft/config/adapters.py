"""The adapter methods `lora.method` can name: each a PEFT config class and the traits sft asks of it.

The `lora` section configures whichever PEFT method `lora.method` names (LoRA by default, so every
config written before methods existed keeps meaning LoRA and keeps its hashes). Its typed fields are
the ones most methods share (rank, target modules, saved modules) plus LoRA's own; any other field of the
method's PEFT config class is accepted as an extra key and checked against that class by
`sft.experiment.checks` (a peft import, so not here).

Traits (the registry's metadata, known without importing peft):
- `typed`: the section's typed fields the method takes. A typed field set for a method that does not
  take it is refused (a field another method owns) unless it holds its default (a default means what
  leaving the key out means, as in the config hash). The fields a method takes reach PEFT with sft's
  defaults (r = 8 for every method: VeRA's paper rank is `r: 256`).
- `default_targets`: target_modules when the config leaves it unset (None: PEFT's per-architecture list).
- `low_rank_pair`: the adapted layers hold LoRA's A/B pair, so sft's initializers (pca, pissa, umap) and
  PEFT's LoRA initializations apply.
- `merges`: `merge_and_unload` folds the adapter into the base weights (an export can be merged).
- `quantized`: PEFT has layers for bitsandbytes 4/8-bit bases for this method.
- `head`: the method can carry a classification head (the head in `modules_to_save`).
- `virtual_tokens`: a prompt-learning method; its learned tokens are a fixed prefix of every sequence,
  which label scoring keeps as a KV cache (`sft.scoring.trie`).
- `fixed`: settings the method's name implies (DoRA is LoRA with use_dora), `defaults`: PEFT arguments
  the method needs and PEFT leaves unset (prompt tuning's number of virtual tokens).
- `sft_trainer`: TRL's SFTTrainer (generative training) can train it. Prefix tuning cannot: its learned
  keys and values enter as the model's KV cache, and TRL's fused LM-head forward runs with use_cache=False,
  which drops them (the sequence then no longer matches its attention mask). Label scoring would be exact
  (the scorer keeps the prefix as its cache); training is what is refused. Nor can it carry a
  classification head (`head`): PEFT requires a model that returns a KV cache for prefix tuning, and
  sequence-classification models do not.
- `total_steps`: the method schedules over training (AdaLoRA's budget): sft fills `total_step`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sft.registry import Registry

LORA_FIELDS = (
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "bias",
    "init_lora_weights",
    "use_rslora",
    "use_dora",
    "modules_to_save",
    "eva_config",
    "corda_config",
)


@dataclass(frozen=True)
class AdapterTraits:
    """What sft asks of an adapter method (see the module docstring)."""

    label: str
    peft_config: str  # "module:Class" of its PEFT config
    typed: tuple[str, ...]
    default_targets: str | None = "all-linear"
    low_rank_pair: bool = False
    merges: bool = True
    quantized: bool = False
    head: bool = True
    virtual_tokens: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    total_steps: bool = False
    sft_trainer: bool = True


ADAPTERS = Registry("adapter method")
DEFAULT_METHOD = "lora"


def _add(name: str, traits: AdapterTraits) -> None:
    ADAPTERS.add(name, traits.peft_config, traits=traits)


_add("lora", AdapterTraits("LoRA", "peft:LoraConfig", LORA_FIELDS, low_rank_pair=True, quantized=True))
_add(
    "rslora",
    AdapterTraits(
        "rsLoRA", "peft:LoraConfig", LORA_FIELDS, low_rank_pair=True, quantized=True, fixed={"use_rslora": True}
    ),
)
_add(
    "dora",
    AdapterTraits("DoRA", "peft:LoraConfig", LORA_FIELDS, low_rank_pair=True, quantized=True, fixed={"use_dora": True}),
)
_add(
    "adalora",
    AdapterTraits(
        "AdaLoRA",
        "peft:AdaLoraConfig",
        ("lora_alpha", "lora_dropout", "target_modules", "bias", "modules_to_save"),
        quantized=True,
        total_steps=True,
    ),
)
_add("loha", AdapterTraits("LoHa", "peft:LoHaConfig", ("r", "target_modules", "modules_to_save")))
_add("lokr", AdapterTraits("LoKr", "peft:LoKrConfig", ("r", "target_modules", "modules_to_save")))
_add("vera", AdapterTraits("VeRA", "peft:VeraConfig", ("r", "target_modules", "bias", "modules_to_save")))
_add(
    "ia3",
    AdapterTraits(
        "(IA)³", "peft:IA3Config", ("target_modules", "modules_to_save"), default_targets=None, quantized=True
    ),
)
# OFT is sized by oft_block_size (PEFT refuses r and a block size together), so sft's default r stays out.
_add("oft", AdapterTraits("OFT", "peft:OFTConfig", ("target_modules", "bias", "modules_to_save")))
_add("boft", AdapterTraits("BOFT", "peft:BOFTConfig", ("target_modules", "bias", "modules_to_save")))
_add(
    "prompt_tuning",
    AdapterTraits(
        "prompt tuning",
        "peft:PromptTuningConfig",
        ("modules_to_save",),
        default_targets=None,
        merges=False,
        quantized=True,
        virtual_tokens=True,
        defaults={"num_virtual_tokens": 8},
    ),
)
_add(
    "prefix_tuning",
    AdapterTraits(
        "prefix tuning",
        "peft:PrefixTuningConfig",
        ("modules_to_save",),
        default_targets=None,
        merges=False,
        quantized=True,
        virtual_tokens=True,
        sft_trainer=False,
        head=False,
        defaults={"num_virtual_tokens": 8},
    ),
)


def adapter_traits(method: str) -> AdapterTraits:
    """The traits of `method` (no peft import); a KeyError naming the choices for an unknown one."""
    traits: AdapterTraits = ADAPTERS.info(method)["traits"]
    return traits


def owners(field_name: str) -> list[str]:
    """The methods whose typed fields include `field_name`."""
    return [name for name in ADAPTERS if field_name in adapter_traits(name).typed]
