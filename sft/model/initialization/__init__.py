"""Custom LoRA initializations computed from the (dequantized) weights of the adapted layers.

`registry` holds name -> function, `methods` the built-in ones (pca, pissa, umap), `dequantize` turns a
possibly quantized base layer into a float weight, `cache` stores results as safetensors, and `apply`
writes them into a PEFT model. Importing this package imports no heavy library.
"""

from sft.model.initialization.registry import INITIALIZERS, get_initializer, register_initializer

__all__ = ["INITIALIZERS", "get_initializer", "register_initializer"]
