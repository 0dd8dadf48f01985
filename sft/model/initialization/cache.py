"""A disk cache of computed initializations, so a grid that crosses seeds, shots or calibrations computes
each layer's SVD (or UMAP) once.

One safetensors file per key: (model, revision, quantization, layer name, weight shape, a digest of the
stored weight bytes, rank, method, method arguments), hashed into the file name. The digest makes a
changed checkpoint under the same name (e.g. a re-saved local folder) miss instead of returning stale
factors. safetensors holds tensors only, so loading never executes code (no pickle).

The folder is `$SFT_INIT_CACHE` when set (`off` disables caching), else ~/.cache/sft/initializations.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

ENV_VAR = "SFT_INIT_CACHE"
DEFAULT_FOLDER = Path.home() / ".cache" / "sft" / "initializations"
FORMAT = 1  # bump when the meaning of stored factors changes


def default_folder() -> Path | None:
    """The cache folder from the environment; None when caching is turned off."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return DEFAULT_FOLDER
    return None if value.strip().lower() in ("", "off", "none", "0") else Path(value).expanduser()


def weight_digest(layer: Any) -> str:
    """A digest of the bytes the layer stores its weight in (packed or not), read once per layer."""
    digest = hashlib.blake2b(digest_size=16)
    for name in ("weight", "qweight", "qzeros", "scales", "g_idx", "SCB"):
        tensor = getattr(layer, name, None)
        if isinstance(tensor, torch.Tensor):
            data = tensor.detach().contiguous().cpu()
            digest.update(name.encode())
            digest.update(str(tuple(data.shape)).encode())
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    weight = getattr(layer, "weight", None)
    state = getattr(weight, "quant_state", None)
    if state is not None:  # 4-bit: the absmax / code tensors change the dequantized values
        for tensor in (state.absmax, state.code):
            digest.update(tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class InitializationCache:
    """get_or_compute(key, compute): the stored factors of `key`, or compute() stored for next time."""

    def __init__(self, folder: Path | str | None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0
        self.misses = 0

    def path(self, key: dict[str, Any]) -> Path:
        assert self.folder is not None
        canonical = json.dumps({"format": FORMAT, **key}, sort_keys=True, default=str)
        name = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        return self.folder / f"{key.get('method', 'init')}-{name}.safetensors"

    def get_or_compute(self, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.folder is None:
            self.misses += 1
            return compute()
        path = self.path(key)
        if path.is_file():
            self.hits += 1
            return load_file(str(path))
        self.misses += 1
        factors = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        # write then rename: a concurrent run or a crash never leaves a half-written file under the final name
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in factors.items()}
        save_file(tensors, str(partial), metadata={"key": json.dumps(key, sort_keys=True, default=str)})
        os.replace(partial, path)
        return factors
