"""PEFT's data-driven LoRA initializations, EVA and CorDA, run over the experiment's own training inputs.

The algorithms are PEFT's (`peft.tuners.lora.eva`: `get_eva_state_dict`, `initialize_lora_eva_weights`;
`peft.tuners.lora.corda`: `preprocess_corda`); sft decides what they read and keeps what they compute.

- What they read: the inputs the trainer trains on, built by the training code (`sft.training`) and passed in:
  the shots' prompts and completions tokenized as the trainer tokenizes them, or the head's model inputs in head
  mode. Never a validation or test example: the training code has no other inputs to give.
- EVA runs on the PEFT model with its adapters disabled, over batches of the trainer's size: each adapted layer's
  inputs go through an incremental SVD until its top components settle; PEFT then loads them as lora_A (B = 0)
  and gives each layer the rank its explained variance earns (`rank_pattern`, saved with the adapter).
- CorDA runs on the base model before the LoRA layers exist, one sequence at a time (PEFT's hook reads a single
  sequence per forward): it builds each target layer's input covariance, decomposes the weight with it and leaves
  the result on the layer, which `get_peft_model` turns into the adapter, rewriting the base weight into the
  residual W - B A (as PEFT's PiSSA does), so the adapter is saved converted (`sft.training.common`).
- The cache: the result (EVA's components, CorDA's decomposition) is stored as safetensors in sft's initialization
  cache (`cache`, no pickle; PEFT's own CorDA cache files are pickles and are not used), keyed by the checkpoint, a
  digest of the adapted layers' weights, a digest of the inputs and the settings that decide the result. Runs of
  one shots sample and settings (another learning rate, another epoch count) compute it once.
- Randomness: the pass (and EVA's loading) runs under a forked RNG, so training draws the same numbers whether the
  result was computed or read from the cache.

Each function returns what results.json records of the initialization (`apply.record`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from sft.model.initialization.apply import lora_layers, record
from sft.model.initialization.cache import InitializationCache, default_folder, weight_digest

log = logging.getLogger(__name__)

# EVA repeats the batches until every layer's components settle; passes over all of them before sft gives up.
EVA_MAX_PASSES = 200


def inputs_digest(batches: list[dict[str, Any]]) -> str:
    """A digest of the inputs in order (every tensor's shape, dtype and bytes, every other value's repr)."""
    digest = hashlib.blake2b(digest_size=16)
    for batch in batches:
        for name in sorted(batch):
            value = batch[name]
            digest.update(name.encode())
            if isinstance(value, torch.Tensor):
                data = value.detach().contiguous().cpu()
                digest.update(f"{tuple(data.shape)}{data.dtype}".encode())
                digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
            else:
                digest.update(repr(value).encode())
    return digest.hexdigest()


def layers_digest(layers: list[tuple[str, Any]]) -> str:
    """A digest of the named layers' stored weights (`cache.weight_digest` of each)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, layer in layers:
        digest.update(f"{name}:{weight_digest(layer)}".encode())
    return digest.hexdigest()


def _cache(cache_folder: Path | str | bool | None) -> InitializationCache:
    return InitializationCache(default_folder() if cache_folder is True else (cache_folder or None))


@contextlib.contextmanager
def _isolated(model: Any) -> Iterator[None]:
    """Run a pass without touching the global RNG state or the model's train/eval mode."""
    training = model.training
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            yield
    finally:
        model.train(training)


def _eva_positions(batch: dict[str, Any], peft_config: Any) -> int:
    """The positions of `batch` EVA's SVD reads (PEFT's own mask: no padding, and no prompt token when the
    label mask is on)."""
    from peft.tuners.lora.eva import prepare_model_inputs_fn_language_modeling

    return len(prepare_model_inputs_fn_language_modeling(batch, peft_config))


def eva(
    model: Any,
    batches: list[dict[str, Any]],
    examples: int,
    model_key: dict[str, Any],
    cache_folder: Path | str | bool | None = True,
    adapter_name: str = "default",
) -> dict[str, Any]:
    """Initialize the LoRA layers of the PEFT `model` (built with init_lora_weights "eva") by EVA over `batches`,
    the trainer's inputs (`examples` training examples); the result comes from the cache when it holds it."""
    from peft.tuners.lora.eva import get_eva_state_dict, initialize_lora_eva_weights

    peft_config = model.peft_config[adapter_name]
    layers = lora_layers(model, adapter_name)
    cache = _cache(cache_folder)
    components = max(round(layer.r[adapter_name] * peft_config.eva_config.rho) for _, layer in layers)
    positions = [_eva_positions(batch, peft_config) for batch in batches]
    if max(positions, default=0) < components:
        raise ValueError(
            f"EVA reads at most {max(positions, default=0)} token positions in a batch of the training inputs but "
            f"needs at least {components} (lora.r x lora.eva_config.rho) for its SVD; raise "
            "training.trainer_args.per_device_train_batch_size, set lora.eva_config.use_label_mask false (the label "
            "mask leaves only the answers' tokens), or lower lora.r or lora.eva_config.rho"
        )
    skipped = sum(count < components for count in positions)
    if skipped:
        log.warning("EVA skips %d of %d batches: fewer than %d token positions", skipped, len(batches), components)
    key = {
        **model_key,
        "method": "eva",
        "inputs": inputs_digest(batches),
        "weights": layers_digest([(name, layer.get_base_layer()) for name, layer in layers]) if cache.folder else None,
        "ranks": {name: layer.r[adapter_name] for name, layer in layers},
        "settings": dataclasses.asdict(peft_config.eva_config),
    }
    passes = 0

    def forward(model: Any, inputs: dict[str, Any]) -> Any:
        nonlocal passes
        passes += 1
        if passes > EVA_MAX_PASSES * len(batches):
            raise RuntimeError(
                f"EVA's components did not settle within {EVA_MAX_PASSES} passes over the training inputs; lower "
                "lora.eva_config.tau (the similarity at which a component counts as settled)"
            )
        return model(**inputs)

    def compute() -> dict[str, Any]:
        with _isolated(model), warnings.catch_warnings():
            # PEFT moves every input value to the model's device and warns about the ints of padding-free batches
            warnings.filterwarnings("ignore", message=".*could not be moved to the correct device")
            state = get_eva_state_dict(
                model,
                batches,
                forward_fn=forward,
                adapter_name=adapter_name,
                gather_distributed_inputs=False,  # every data-parallel rank reads all the shots: no gathering
                show_progress_bar=False,
            )
        return {name: tensor.contiguous() for name, tensor in state.items()}

    start = time.perf_counter()
    state = cache.get_or_compute(key, compute)
    with _isolated(model):  # layers whose rank changes are rebuilt, drawing weights EVA then overwrites
        initialize_lora_eva_weights(model, eva_state_dict=dict(state), adapter_name=adapter_name)
    seconds = time.perf_counter() - start
    ranks = {name: int(tensor.shape[0]) for name, tensor in state.items()}
    log.info("EVA over %d training examples (%s) in %.1fs: ranks %s", examples,
             "from the cache" if cache.hits else f"{passes} forward passes", seconds, ranks)  # fmt: skip
    return record("eva", examples, cache.hits > 0, seconds, len(state))


def corda(
    model: Any,
    lora_config: Any,
    sequences: list[list[int]],
    model_key: dict[str, Any],
    cache_folder: Path | str | bool | None = True,
) -> dict[str, Any]:
    """Run CorDA's preprocessing over `sequences` (the training examples' token ids) on the base `model`, before
    `get_peft_model` builds the adapter of `lora_config` (init_lora_weights "corda"), or load its result from
    the cache; either way each target layer holds the decomposition PEFT's CorDA init reads."""
    from peft.tuners.lora.corda import CordaEigens, preprocess_corda, target_modules
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

    # "all-linear" is resolved to layer names by get_peft_model; CorDA's preprocessing matches names as given
    config: Any = _maybe_include_all_linear_layers(copy.deepcopy(lora_config), model)

    def layers() -> list[tuple[str, Any]]:  # (name, layer): PEFT annotates them as modules
        found: Any = target_modules(model, config)
        return list(found)

    targets = layers()
    if not targets:
        raise ValueError("CorDA found no layer of lora.target_modules to decompose; name linear layers of the model")
    cache = _cache(cache_folder)
    device = next(model.parameters()).device
    batches = [{"input_ids": torch.tensor([ids], device=device)} for ids in sequences]
    settings = dataclasses.asdict(config.corda_config)
    key = {
        **model_key,
        "method": "corda",
        "inputs": inputs_digest(batches),
        "weights": layers_digest(targets) if cache.folder else None,
        "ranks": {"r": config.r, "rank_pattern": config.rank_pattern, "targets": [name for name, _ in targets]},
        "settings": {name: settings[name] for name in ("corda_method", "use_float16_for_covariance")},
    }

    def run_model() -> None:
        for batch in batches:
            model(**batch, use_cache=False)

    def compute() -> dict[str, Any]:
        with _isolated(model):
            preprocess_corda(model, config, run_model=run_model)
        found = {}
        for name, module in layers():
            for part in ("S_WC", "U_WC", "V_WC"):
                found[f"{name}.{part}"] = getattr(module.eigens, part).contiguous()
        return found

    start = time.perf_counter()
    stored = cache.get_or_compute(key, compute)
    for name, module in targets:
        where = module.weight.device
        module.eigens = CordaEigens(**{part: stored[f"{name}.{part}"].to(where) for part in ("S_WC", "U_WC", "V_WC")})
    seconds = time.perf_counter() - start
    log.info("CorDA over %d training examples (%s) in %.1fs", len(sequences),
             "from the cache" if cache.hits else "computed", seconds)  # fmt: skip
    return record("corda", len(sequences), cache.hits > 0, seconds, len(targets))
