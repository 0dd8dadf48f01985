"""Loading tokenizers and models as a config asks: device, dtype, quantization, chat template, adapter.

Hub ids and local folders go through the same `from_pretrained` calls. Remote code runs only when the
config sets `model.trust_remote_code`.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from sft.config import ConfigError, ModelConfig
from sft.model.placement import balanced_device_map
from sft.model.quantization import build_quantization_config

log = logging.getLogger(__name__)

# PEFT warns when a rank_pattern key names no adapted module (a LoRA typo). AdaLoRA's rank_pattern is another
# thing: its keys name each layer's lora_E parameter and hold the mask of the ranks it kept, which AdaLoRA's own
# loading applies; PEFT's check reads them as unmatched and warns that they "were ignored", which is false. Only a
# warning whose keys are all AdaLoRA's is silenced.
ADALORA_RANK_PATTERN = (
    r"The following rank_pattern keys did not match any targeted module and were ignored: "
    r"\['[^']*\.lora_E'(, '[^']*\.lora_E')*\]"
)


def resolve_device(config: ModelConfig) -> str:
    if config.device:
        return config.device
    if not torch.cuda.is_available():
        return "cpu"
    # Under `accelerate launch` every rank loads its own copy: onto its own GPU, not all onto GPU 0.
    local_rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{local_rank}" if local_rank is not None else "cuda"


def resolve_dtype(config: ModelConfig, device: str) -> Any:
    """float32 on CPU (bf16 matmuls are slow there); the checkpoint's own dtype on accelerators."""
    if config.dtype != "auto":
        return getattr(torch, config.dtype)
    return torch.float32 if device == "cpu" else "auto"


def quantization_config(config: ModelConfig) -> Any:
    """Instantiate the transformers quantization config class named in `model.quantization`."""
    return build_quantization_config(config.quantization)


def _read_template(value: str) -> str:
    """A template string as is, or the text of a .jinja/.j2 file (which must exist: a mistyped path
    must not silently become a constant template)."""
    if not value.endswith((".jinja", ".j2")):
        return value
    path = Path(value)
    if not path.is_file():
        raise ConfigError([f"model.chat_template: template file {value!r} does not exist"])
    return path.read_text(encoding="utf-8")


def load_tokenizer(config: ModelConfig, path: str | None = None) -> Any:
    """The tokenizer with a pad token and a chat template, ready for batched prompts."""
    tokenizer = AutoTokenizer.from_pretrained(
        path or config.name, revision=None if path else config.revision, trust_remote_code=config.trust_remote_code
    )
    if config.chat_template is not None:
        tokenizer.chat_template = _read_template(config.chat_template)
    elif config.chat_template_from is not None:
        donor = AutoTokenizer.from_pretrained(config.chat_template_from, trust_remote_code=config.trust_remote_code)
        if not donor.chat_template:
            raise ConfigError([f"model.chat_template_from: {config.chat_template_from!r} has no chat template either"])
        tokenizer.chat_template = donor.chat_template
    if not tokenizer.chat_template:
        raise ConfigError(
            [
                f"model: the tokenizer of {config.name!r} has no chat template; set model.chat_template "
                "(a Jinja string or .jinja file) or model.chat_template_from (a model whose template fits)"
            ]
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    config: ModelConfig,
    adapter: str | None = None,
    trainable: bool = False,
    model_class: Any = None,
    extra_args: dict[str, Any] | None = None,
) -> Any:
    """The causal LM (or `model_class`, e.g. a sequence classifier, with `extra_args` for from_pretrained)
    on its device, with the trained adapter `adapter` applied when given."""
    model_class = model_class or AutoModelForCausalLM
    device = resolve_device(config)
    kwargs: dict[str, Any] = {"trust_remote_code": config.trust_remote_code, "revision": config.revision}
    kwargs["dtype"] = resolve_dtype(config, device)
    quantization = quantization_config(config)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    kwargs.update(config.model_args.from_pretrained_args())
    kwargs.update(extra_args or {})
    placement = config.model_args
    if placement.parallelize:
        no_split = placement.no_split_module_classes
        kwargs["device_map"] = balanced_device_map(config, kwargs["dtype"], no_split, model_class, extra_args)
    placed = "device_map" in kwargs or quantization is not None
    if quantization is not None and "device_map" not in kwargs:
        kwargs["device_map"] = {"": device}
    log.info("Loading model %s on %s", config.name, kwargs.get("device_map", device))
    try:
        model = model_class.from_pretrained(config.name, **kwargs)
    except ImportError as error:  # a backend package transformers needs for this model
        raise ConfigError([f"model: loading {config.name!r} needs a package that is not installed: {error}"]) from None
    if not placed:
        model.to(device)
    if adapter is not None:
        log.info("Loading adapter %s", adapter)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=ADALORA_RANK_PATTERN, category=RuntimeWarning)
            model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    if not trainable:
        model.eval()
    return model
