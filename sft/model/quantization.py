"""`model.quantization: {config_class, args}`: any transformers quantization config class, by name.

Problems are found before any weight loads: an unknown class name (with the closest one and the full
list) and a missing backend package (with the pip package to install). Transformers 5 loads AWQ and
GPTQ checkpoints through GPT-QModel (AutoAWQ is deprecated), bitsandbytes 4- and 8-bit models run on
CPU too.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from sft.config import ConfigError, QuantizationConfig
from sft.registry import did_you_mean

# config class -> (importable module, pip package) that transformers needs to load such a model.
BACKENDS: dict[str, list[tuple[str, str]]] = {
    "BitsAndBytesConfig": [("bitsandbytes", "bitsandbytes")],
    "GPTQConfig": [("optimum", "optimum"), ("gptqmodel", "gptqmodel")],
    "AwqConfig": [("gptqmodel", "gptqmodel")],
    "AutoRoundConfig": [("auto_round", "auto-round")],
    "AqlmConfig": [("aqlm", "aqlm")],
    "CompressedTensorsConfig": [("compressed_tensors", "compressed-tensors")],
    "EetqConfig": [("eetq", "eetq")],
    "FbgemmFp8Config": [("fbgemm_gpu", "fbgemm-gpu")],
    "HiggsConfig": [("flute", "flute-kernel")],
    "HqqConfig": [("hqq", "hqq")],
    "QuantoConfig": [("optimum.quanto", "optimum-quanto")],
    "QuarkConfig": [("quark", "amd-quark")],
    "TorchAoConfig": [("torchao", "torchao")],
    "VptqConfig": [("vptq", "vptq")],
    "SpQRConfig": [("spqr_quant", "spqr_quant")],
    "GgufConfig": [("gguf", "gguf")],
}


def config_classes() -> dict[str, type]:
    """The quantization config classes defined by transformers (its quantization module only: walking all
    of `transformers` would import every model family)."""
    from transformers.utils import quantization_config as module

    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, module.QuantizationConfigMixin) and name.endswith("Config")
    }


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def missing_backends(config_class: str) -> list[str]:
    """The pip packages `config_class` needs that are not installed."""
    return [package for module, package in BACKENDS.get(config_class, []) if not _installed(module)]


def quantization_problems(quantization: QuantizationConfig | None) -> list[str]:
    """An unknown class name or a missing backend package, as config messages."""
    if quantization is None:
        return []
    known = config_classes()
    name = quantization.config_class
    if name not in known:
        listing = ", ".join(sorted(known))
        return [f"model.quantization.config_class: unknown class {name!r}{did_you_mean(name, known)}; known: {listing}"]
    missing = missing_backends(name)
    if missing:
        return [f"model.quantization: {name} needs {' and '.join(missing)}; run `pip install {' '.join(missing)}`"]
    return []


def build_quantization_config(quantization: QuantizationConfig | None) -> Any:
    """The transformers quantization config object, or None; ConfigError with every problem otherwise."""
    if quantization is None:
        return None
    problems = quantization_problems(quantization)
    if problems:
        raise ConfigError(problems)
    name = quantization.config_class
    try:
        return config_classes()[name](**quantization.args)
    except (TypeError, ValueError, ImportError) as error:
        raise ConfigError([f"model.quantization.args: {name} rejected them: {error}"]) from None


def memory_dtype(quantization: QuantizationConfig | None, dtype: Any) -> Any:
    """The per-parameter storage accelerate should assume when balancing a model over devices."""
    import torch
    from accelerate.utils.dataclasses import CustomDtype

    args = quantization.args if quantization is not None else {}
    bits = 4 if args.get("load_in_4bit") else 8 if args.get("load_in_8bit") else args.get("bits")
    by_bits = {2: CustomDtype.INT2, 4: CustomDtype.INT4, 8: torch.int8}
    if bits in by_bits:
        return by_bits[bits]
    return dtype if isinstance(dtype, torch.dtype) else None
