"""Few-shot LoRA training with TRL's SFTTrainer on prompt/completion chat examples.

Prompt/completion pairs make TRL mask the prompt out of the loss, so the adapter learns only the
answer. Prompts are built by the same `PromptBuilder` that inference uses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sft.config import ExperimentConfig
from sft.data import ExperimentData
from sft.prompting import ICLSampler, PromptBuilder, training_examples

log = logging.getLogger(__name__)


def trainer_arguments(config: ExperimentConfig, run_folder: Path, seed: int) -> dict[str, Any]:
    """SFTConfig arguments: our defaults for unattended runs, overridden by `training.trainer_args`."""
    import torch

    user = config.training.trainer_args if config.training else {}
    on_gpu = torch.cuda.is_available() and not (config.model.device or "").startswith("cpu")
    defaults: dict[str, Any] = {
        "output_dir": str(run_folder / "checkpoints"),
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10,
        "disable_tqdm": True,
        "seed": seed,
        "data_seed": seed,
        # TRL turns bf16 on by default; CPUs (and fp16 runs) must not get it.
        "bf16": on_gpu and torch.cuda.is_bf16_supported() and not user.get("fp16", False),
    }
    return {**defaults, **user}


def train_adapter(
    config: ExperimentConfig, data: ExperimentData, model: Any, tokenizer: Any, seed: int, run_folder: Path
) -> tuple[Any, dict[str, Any]]:
    """Train a LoRA adapter on the sampled shots; return the PEFT model and training statistics."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from sft.initialization.apply import apply_configured_initializer

    assert config.lora is not None and config.training is not None and data.shots is not None
    builder = PromptBuilder(tokenizer, config.prompting)
    sampler = ICLSampler(data.shots, config.prompting.output_column, data.labels, seed, purpose="train")
    examples = training_examples(builder, sampler, data.shots, config.training.icl_examples)
    log.info("Training on %d examples with %d in-context examples each", len(examples), config.training.icl_examples)
    # LoRA matrices are drawn from the global RNG when the trainer wraps the model.
    set_seed(seed)
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**trainer_arguments(config, run_folder, seed)),
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=LoraConfig(**config.lora.peft_kwargs()),
    )
    initial = keep_initial_adapter(trainer.model, run_folder)
    # The trainer built the LoRA layers with PEFT's default init; an sft initializer overwrites them now.
    apply_configured_initializer(trainer.model, config)
    model, stats = run_trainer(trainer, len(examples))
    model.sft_initial_adapter = initial  # read by save_adapter
    return model, stats


def run_trainer(trainer: Any, examples: int) -> tuple[Any, dict[str, Any]]:
    """Train; return the trained model in eval mode and the statistics results.json reports."""
    result = trainer.train()
    model = trainer.model
    model.eval()
    trainable, total = model.get_nb_trainable_parameters()
    stats = {
        "train_examples": examples,
        "train_loss": float(result.training_loss),
        "train_steps": int(result.global_step),
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "world_size": int(trainer.args.world_size),  # > 1 under data-parallel `accelerate launch`
    }
    return model, stats


def keep_initial_adapter(model: Any, run_folder: Path) -> Path | None:
    """Save the untrained adapter when PEFT's initialization rewrote the base weights (pissa_residual,
    pissa_niter_<n>, olora), so `save_adapter` can express the trained one on the original base model."""
    from sft.experiment import is_main_process

    value = str(model.peft_config["default"].init_lora_weights).lower()
    # Only rank 0 saves (and so converts) the adapter; other data-parallel ranks must not write the folder.
    if not (value.startswith("pissa") or value == "olora") or not is_main_process():
        return None
    folder = run_folder / "initial-adapter"
    model.save_pretrained(str(folder))
    return folder


def save_adapter(model: Any, tokenizer: Any, folder: Path) -> Path:
    """Save the adapter and the tokenizer (with its chat template) so `predict` can reload them."""
    # PEFT's PiSSA / OLoRA adapters are relative to a rewritten base weight (W - W_r); PEFT converts them into
    # a plain LoRA adapter (rank 2r) on the original weights, given the adapter as it was before training.
    # (Reloading the unconverted adapter would re-run the initialization, which randomized SVD doesn't repeat.)
    initial = getattr(model, "sft_initial_adapter", None)
    model.save_pretrained(str(folder), path_initial_model_for_weight_conversion=str(initial) if initial else None)
    tokenizer.save_pretrained(str(folder))
    return folder
