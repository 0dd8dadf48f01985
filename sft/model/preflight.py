"""What would fail when a model loads, found without loading its weights: the model folder or hub id
(offline mode named as the cause), its config, its tokenizer and chat template, the device, and the
LoRA target modules and head on a skeleton built on the meta device.

A grid of hundreds of experiments must not learn of a typo in `model.name` 80 seconds into its first
run. Each distinct model's config and tokenizer are read once per process (`once`), so the cost is one
config and one tokenizer per model, whatever the size of the grid.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import init_empty_weights
from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id
from peft import get_peft_model
from transformers import AutoConfig, AutoTokenizer
from transformers.quantizers.base import get_keys_to_not_convert

from sft.config import ConfigError, LoraSection, ModelConfig
from sft.config.adapters import adapter_traits
from sft.model.adapters import peft_config
from sft.model.loading import load_tokenizer, resolve_device

T = TypeVar("T")
_DONE: dict[str, Any] = {}


def once(key: Any, make: Callable[[], T]) -> T:
    """`make()` the first time `key` is seen in this process, then the same value (or the same ConfigError)."""
    text = json.dumps(key, sort_keys=True, default=str)
    if text not in _DONE:
        try:
            _DONE[text] = make()
        except ConfigError as error:
            _DONE[text] = error
    found = _DONE[text]
    if isinstance(found, ConfigError):
        raise found
    return found


def source_problems(name: str, revision: str | None) -> list[str]:
    """`model.name` must be a folder holding a config.json, or a valid hub id that is in the local cache
    or can be downloaded (not in offline mode)."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            return [f"model.name: {name!r} is a file; give the folder a model was saved to, or a hub id"]
        if not (path / "config.json").is_file():
            return [f"model.name: the folder {name!r} has no config.json; give the folder save_pretrained wrote"]
        return []
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        return [f"model.name: no folder {name!r}; check the path (a hub id has the form org/name)"]
    try:
        validate_repo_id(name)
    except HFValidationError:
        return [f"model.name: {name!r} is neither an existing folder nor a hub id (org/name); check the spelling"]
    if isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        return []
    if constants.HF_HUB_OFFLINE:
        return [
            f"model.name: {name!r} is not a local folder and not in the Hugging Face cache ({constants.HF_HUB_CACHE}), "
            f"and offline mode (HF_HUB_OFFLINE=1) forbids downloading it; download it first (`hf download {name}`), "
            "give a local folder, or unset HF_HUB_OFFLINE"
        ]
    return []  # online: reading its config below downloads it or names why it cannot


def model_config(model: ModelConfig) -> Any:
    """The model's transformers config (read once per model)."""

    def read() -> Any:
        problems = source_problems(model.name, model.revision)
        if problems:
            raise ConfigError(problems)
        try:
            return AutoConfig.from_pretrained(
                model.name, revision=model.revision, trust_remote_code=model.trust_remote_code
            )
        except Exception as error:  # transformers raises OSError, ValueError, KeyError... for the same cause
            raise ConfigError([f"model.name: cannot read the config of {model.name!r}: {_first_line(error)}"]) from None

    return once(["config", model.name, model.revision, model.trust_remote_code], read)


def tokenizer(model: ModelConfig, chat: bool) -> Any:
    """The tokenizer as the run will load it: with its chat template (`chat`, generative models) or plain
    (a classification head). Read once per model and template."""

    def read() -> Any:
        model_config(model)  # a missing model is named by its config first
        try:
            if chat:
                return load_tokenizer(model)
            return AutoTokenizer.from_pretrained(
                model.name, revision=model.revision, trust_remote_code=model.trust_remote_code
            )
        except ConfigError:
            raise
        except Exception as error:
            where = "model.chat_template_from" if model.chat_template_from else "model.name"
            raise ConfigError([f"{where}: cannot load the tokenizer of {model.name!r}: {_first_line(error)}"]) from None

    key = ["tokenizer", chat, model.name, model.revision, model.chat_template, model.chat_template_from]
    return once(key, read)


def device_problems(model: ModelConfig) -> list[str]:
    """`model.device` must be a device torch has here."""
    if model.device is None:
        return []
    try:
        device = torch.device(model.device)
    except (RuntimeError, ValueError):
        return [f"model.device: {model.device!r} is not a torch device; use cpu, cuda, cuda:N or mps (or remove it)"]
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            build = "a CPU build of torch" if torch.version.cuda is None else "no visible CUDA GPU"
            return [f"model.device: {model.device!r}, but this machine has {build}; remove model.device or use cpu"]
        if device.index is not None and device.index >= count:
            return [f"model.device: {model.device!r}, but only {count} GPU(s) are visible (cuda:0-{count - 1})"]
    if device.type == "mps" and not torch.backends.mps.is_available():
        return [f"model.device: {model.device!r}, but MPS is not available here; remove model.device or use cpu"]
    return []


def skeleton(model: ModelConfig, model_class: Any, **settings: Any) -> Any:
    """The model's modules on the meta device: its structure without a byte of weights."""
    config = copy.deepcopy(model_config(model))  # the cached config stays as read
    for key, value in settings.items():
        setattr(config, key, value)
    with init_empty_weights():
        return model_class.from_config(config, trust_remote_code=model.trust_remote_code)


def structure_problems(
    model: ModelConfig,
    model_class: Any,
    failure: str,
    lora: LoraSection | None,
    task_type: str | None = None,
    **settings: Any,
) -> list[str]:
    """Build the skeleton as `model_class` (with config `settings`, e.g. num_labels) and apply `lora` to it:
    once per distinct model, class and LoRA config, so a grid of hundreds checks each combination once.
    `failure` starts the message when transformers cannot build the model as that class."""

    def check() -> list[str]:
        try:
            meta_model = skeleton(model, model_class, **settings)
        except ConfigError:
            raise
        except Exception as error:
            return [f"{failure}: {_first_line(error)}"]
        return lora_problems(meta_model, lora, task_type) if lora is not None else []

    lora_key = lora.peft_kwargs() if lora is not None else None
    key = ["structure", model.name, model.revision, model_class.__name__, settings, task_type, lora_key]
    return list(once(key, check))


def lora_problems(meta_model: Any, lora: LoraSection, task_type: str | None = None) -> list[str]:
    """Apply the adapter config (`lora.method`) to the meta skeleton the way training will (LoRA with PEFT's
    default initialization: data-driven ones need weights), so unknown target modules are named before
    any weight loads."""
    if adapter_traits(lora.method).low_rank_pair:
        lora = lora.model_copy(update={"init_lora_weights": True, "eva_config": None, "corda_config": None})
    try:
        get_peft_model(meta_model, peft_config(lora, task_type or None))
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        text = _first_line(error)
        if "target" in text.lower():
            targets = lora.target_modules
            return [
                f"lora.target_modules: {targets!r} do not fit the model: {text} Its linear layers are named "
                f"{linear_names(meta_model)}"
            ]
        return [f"lora: peft cannot apply this LoRA config to the model: {text}"]
    return []


# bitsandbytes' CPU kernel for 4-bit weights (0.50: `functional._convert_weight_packed_for_cpu`) repacks every
# 4-bit Linear on its first forward without gradients (the first evaluation, after a whole training) when the
# CPU has AVX512-BF16; the repack asserts `out_features % 32 == 0` (its block_n) and reshapes the per-block
# scales to (out_features, in_features // 64), which needs in_features to be a multiple of the 4-bit
# quantization block (64).
CPU_4BIT_BLOCK_N = 32
CPU_4BIT_BLOCKSIZE = 64


def quantized_kernel_problems(model: ModelConfig, model_class: Any, **settings: Any) -> list[str]:
    """A 4-bit bitsandbytes model on a CPU whose repacking kernel cannot take some of its Linear layers'
    shapes: found from a meta skeleton, named with the layer, its shape and the fix, before a training that
    would end in bitsandbytes' assertion at its first evaluation."""
    quantization = model.quantization
    if quantization is None or quantization.config_class != "BitsAndBytesConfig":
        return []
    if not quantization.args.get("load_in_4bit") or not resolve_device(model).startswith("cpu"):
        return []

    def check() -> list[str]:
        try:
            import bitsandbytes.functional as bnb_functional
        except ImportError:  # a missing backend is named by the quantization checks
            return []
        repacks = getattr(bnb_functional, "_convert_weight_packed_for_cpu", None)
        if repacks is None or not bnb_functional.has_avx512bf16():
            return []  # this bitsandbytes or this CPU takes the plain dequantizing path, which takes any shape
        try:
            meta_model = skeleton(model, model_class, **settings)
        except Exception:  # a model that cannot be built is named by the structure checks
            return []
        kept = {*get_keys_to_not_convert(meta_model), *(quantization.args.get("llm_int8_skip_modules") or [])}
        bad = [
            (name, module.out_features, module.in_features)
            for name, module in meta_model.named_modules()
            if isinstance(module, torch.nn.Linear)
            and not any(name == key or name.endswith(f".{key}") or f".{key}." in f".{name}." for key in kept)
            and (module.out_features % CPU_4BIT_BLOCK_N or module.in_features % CPU_4BIT_BLOCKSIZE)
        ]
        if not bad:
            return []
        name, out_features, in_features = bad[0]
        return [
            f"model.quantization: bitsandbytes' 4-bit CPU kernel cannot run layer {name} (weight {out_features} x "
            f"{in_features}): it needs out_features a multiple of {CPU_4BIT_BLOCK_N} and in_features a multiple of "
            f"{CPU_4BIT_BLOCKSIZE}, and would fail at the first evaluation ({len(bad)} layer(s) affected). Fix: "
            "load the model unquantized on the CPU (remove model.quantization), or run it on a GPU (model.device: cuda)"
        ]

    key = ["4bit-cpu", model.name, model.revision, model_class.__name__, settings, quantization.args]
    return list(once(key, check))


def linear_names(meta_model: Any) -> list[str]:
    """The distinct last name parts of the model's Linear and Conv1D layers (what target_modules names)."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in meta_model.named_modules()
        if type(module).__name__ in ("Linear", "Conv1D") and name
    }
    return sorted(names)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
