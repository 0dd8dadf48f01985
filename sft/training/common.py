"""What both kinds of training share: the trainer's arguments, running a trainer, the value a training
returns, saving the adapter, and which data-parallel rank saves."""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sft.config import ExperimentConfig
from sft.config.schema import rewrites_base
from sft.results.layout import TENSORBOARD_FOLDER, Run
from sft.training.batching import FASTEST, Batching, throughput_stats
from sft.training.selection import evaluation_arguments


@dataclass(frozen=True)
class Trained:
    """A trained PEFT model (eval mode), its statistics for results.json, and, when PEFT's initialization
    rewrote the base weights, the untrained adapter `save_adapter` converts the trained one with."""

    model: Any
    stats: dict[str, Any]
    initial_adapter: Path | None = None


def is_main_process() -> bool:
    """Under `accelerate launch` every rank trains; only rank 0 saves the adapter and evaluates."""
    return os.environ.get("RANK", "0") == "0"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device), as the trainer does."""
    from transformers import set_seed

    set_seed(seed)


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
    if config.training is not None and config.training.batching == FASTEST and not on_gpu:
        # TRL checkpoints gradients by default: a third more compute per step for memory a CPU has.
        defaults["gradient_checkpointing"] = False
    if config.training is not None and config.training.evaluates():
        defaults.update(evaluation_arguments(config))
    return {**defaults, **user}


def send_reports_to(arguments: dict[str, Any], run_folder: Path) -> None:
    """Where the trainer's reporters write, set in the environment of the process that trains (transformers and
    W&B read it there): TensorBoard's event files go to the run folder's `tensorboard/` (which a tracked run logs
    and `tensorboard --logdir RESULTS` finds) rather than a dated folder under output_dir; W&B's runs go to the
    run folder's `wandb/`, see `wandb_environment`."""
    value = arguments.get("report_to")
    names = [value] if isinstance(value, str) else list(value or [])
    if "tensorboard" in names or "all" in names:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_folder / TENSORBOARD_FOLDER)
    if "wandb" in names or "all" in names:
        os.environ.update(wandb_environment(run_folder, os.environ))


# W&B's defaults for a run of a grid, unless the user's environment sets them: offline (clusters rarely reach
# W&B, and `wandb sync` uploads the run folders' runs later) into one project for sft's runs.
WANDB_DEFAULTS = {"WANDB_MODE": "offline", "WANDB_PROJECT": "sft", "WANDB_SILENT": "true"}


def wandb_environment(run_folder: Path, environment: typing.Mapping[str, str]) -> dict[str, str]:
    """The W&B variables of the run training in `run_folder`: its runs in the run folder (`wandb/`), grouped by
    the grid (the results folder's name: W&B's `group`), named by the run folder (`<experiment>/seed-<n>`), the
    experiment as the job type; offline into the `sft` project unless `environment` says otherwise. Set for
    each run rather than left to the user's values, because the names are the run's own; W&B reads them once per
    process, which is one run under the grid runner (a process that runs several, as the benchmarks do, keeps
    its first run's folder and names unless it tears W&B down between runs, as the W&B tests do)."""
    try:
        run = Run.from_folder(run_folder)
        group, name, job = Path(run.results_path).name, run.relative, run.name
    except ValueError:  # not a run folder of a results folder: named by its own folder
        group, name, job = run_folder.parent.name, run_folder.name, run_folder.name
    chosen = {"WANDB_DIR": str(run_folder), "WANDB_RUN_GROUP": group, "WANDB_NAME": name, "WANDB_JOB_TYPE": job}
    return chosen | {key: value for key, value in WANDB_DEFAULTS.items() if key not in environment}


def run_trainer(
    trainer: Any,
    examples: int,
    initial_adapter: Path | None = None,
    selection: Any = None,
    batching: Batching | None = None,
    initialization: dict[str, Any] | None = None,
) -> Trained:
    """Train; return the trained model in eval mode and the statistics results.json reports. With a
    model-selection callback (`sft.training.selection`), the model holds the best evaluation's adapter
    and the statistics its learning curve. A trainer of `counting_trainer` adds its tokens per second
    and padding share, with the `batching` used; `initialization` is what the adapter's initialization
    recorded (`sft.model.initialization.apply.record`), kept with the statistics when there is one."""
    result = trainer.train()
    model = trainer.model
    model.eval()
    chosen = selection.outcome(model, int(result.global_step)) if selection is not None else None
    trainable, total = model.get_nb_trainable_parameters()
    stats = {
        "train_examples": examples,
        "train_loss": float(result.training_loss),
        "train_steps": int(result.global_step),
        "trainable_parameters": int(trainable),
        "total_parameters": int(total),
        "world_size": int(trainer.args.world_size),  # > 1 under data-parallel `accelerate launch`
        "seconds_per_step": float(result.metrics.get("train_runtime", 0.0)) / max(1, int(result.global_step)),
        "selection": chosen,
    }
    if batching is not None:
        seconds = float(result.metrics.get("train_runtime", 0.0))
        stats.update(throughput_stats(getattr(trainer, "token_counts", []), seconds, batching))
    if initialization is not None:
        stats["initialization"] = initialization
    return Trained(model, stats, initial_adapter)


def training_batches(rows: Any, collator: Any, batch_size: int) -> list[dict[str, Any]]:
    """The trainer's examples `rows` (a tokenized dataset) in their order, collated by its `collator` into
    batches of `batch_size`: the inputs a data-driven initialization reads (`sft.model.initialization`)."""
    columns = [name for name in rows.column_names if name in ("input_ids", "attention_mask", "labels")]
    examples = [{name: row[name] for name in columns} for row in rows]
    return [dict(collator(examples[start : start + batch_size])) for start in range(0, len(examples), batch_size)]


def keep_initial_adapter(model: Any, run_folder: Path) -> Path | None:
    """Save the untrained adapter when PEFT's initialization rewrote the base weights (pissa_residual,
    pissa_niter_<n>, olora, corda), so `save_adapter` can express the trained one on the original base model."""
    value = getattr(model.peft_config["default"], "init_lora_weights", "")
    # Only rank 0 saves (and so converts) the adapter; other data-parallel ranks must not write the folder.
    if not rewrites_base(value) or not is_main_process():
        return None
    folder = run_folder / "initial-adapter"
    model.save_pretrained(str(folder))
    return folder


def save_adapter(model: Any, tokenizer: Any, folder: Path, initial_adapter: Path | None = None) -> Path:
    """Save the adapter and the tokenizer (with its chat template) so `predict` can reload them."""
    # PEFT's PiSSA / OLoRA / CorDA adapters are relative to a rewritten base weight (W - W_r); PEFT converts them into
    # a plain LoRA adapter (rank 2r) on the original weights, given the adapter as it was before training.
    # (Reloading the unconverted adapter would re-run the initialization, which randomized SVD doesn't repeat.)
    conversion = str(initial_adapter) if initial_adapter else None
    model.save_pretrained(str(folder), path_initial_model_for_weight_conversion=conversion)
    tokenizer.save_pretrained(str(folder))
    return folder


def argument_problems(config: ExperimentConfig, arguments_class: Any, arguments: dict[str, Any]) -> list[str]:
    """Build the trainer's arguments object (`arguments_class(**arguments)`, no model needed) and name every
    `training.trainer_args` key whose value its field type or its checks refuse, with the key path: the
    dataclass itself checks no types, so a string learning rate would fail only once training starts."""
    user = config.training.trainer_args if config.training else {}
    try:
        hints = typing.get_type_hints(arguments_class)
    except Exception:  # an annotation this Python cannot evaluate: keep the construction check below
        hints = {}
    problems = []
    for key, value in user.items():
        if key not in hints or key not in arguments:
            continue
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError:
            wanted = getattr(hints[key], "__name__", None) or str(hints[key]).replace("typing.", "")
            problems.append(f"training.trainer_args.{key}: {value!r} is not a valid {wanted}")
        except Exception:  # pydantic cannot build a schema for this field type; construction decides
            continue
    if problems:
        return problems
    try:
        arguments_class(**arguments)
    except Exception as error:  # __post_init__ raises ValueError, TypeError, ImportError...
        culprits = [key for key in user if _refused(arguments_class, arguments, key)]
        where = ", ".join(f"training.trainer_args.{key}" for key in culprits) or "training.trainer_args"
        text = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        return [f"{where}: {arguments_class.__name__} refuses it: {text}"]
    return []


def _refused(arguments_class: Any, arguments: dict[str, Any], key: str) -> bool:
    """Whether the arguments fail with `key` but build without it (the key to name in the message)."""
    try:
        arguments_class(**{k: v for k, v in arguments.items() if k != key})
    except Exception:
        return False
    return True
