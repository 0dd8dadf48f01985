"""What identifies work: the config hash (an experiment: every setting that differs from the schema's
defaults) and the training key (its trained adapter: the settings listed in `TRAINING_KEY_FIELDS`, with
the reason for each; experiments that share it train once per seed).

Both hash only non-default settings, so a field sft adds later with a default (or a default spelled
out) keeps every existing hash and key: resuming a grid never re-runs finished work because sft grew a
field.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sft.config.experiment import ExperimentConfig

# The training key (`ExperimentConfig.training_key`): section -> the fields of it left OUT of the key;
# sections not named here are left out as a whole (inference, evaluation). Why each is in or out:
# - dataset: path, args, splits, task type, labels and shots decide the sampled shots and the label set
#   (the test split too: labels are read from it). `max_n_test` only picks the test subset.
# - model: name, revision, trust_remote_code, dtype, quantization, head, chat template (the training
#   prompts' format) and model_args (e.g. attn_implementation) decide the trained weights. `device` only
#   places the model; `adapter` is what predict loads and is never trained from.
# - lora, prompting, training: as a whole (the `training` section whole so settings added to it later are
#   in automatically). Prompting renders the training prompts (instruction, templates, truncation by
#   `max_input_length` / `max_output_length`, the multilabel separator); `training.icl_examples` puts
#   in-context examples into them. `inference.icl_examples` and `inference.max_seq_length` only shape
#   test prompts: `PromptBuilder` truncates by max_seq_length in `prompt()` alone, never in
#   `training_example()`, and SFTConfig's own truncation is `training.trainer_args.max_length`.
# - resources: launcher, num_processes and gpus under `launcher: accelerate` (data-parallel ranks change
#   the effective batch); nothing under the python launcher, where one process trains.
# - structured: `target_fields` builds the training targets; the schema, decoding and metric settings only
#   shape inference and scoring (the target is the canonical serialization whatever the schema).
# - the seed is not a config field: the store keeps one adapter per key and seed.
TRAINING_KEY_FIELDS: dict[str, frozenset[str]] = {
    "dataset": frozenset({"max_n_test"}),
    "model": frozenset({"device", "adapter"}),
    "lora": frozenset(),
    "prompting": frozenset(),
    "training": frozenset(),
    "structured": frozenset({"json_schema", "constrained", "regex", "choices", "number_tolerance", "enum_limit"}),
}


def config_hash(resolved: dict[str, Any]) -> str:
    """The SHA-256 of canonical JSON: equal settings give equal hashes whatever their key order."""
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def hashed_settings(config: ExperimentConfig) -> dict[str, Any]:
    """The settings that differ from the schema's defaults: what identifies an experiment."""
    return config.model_dump(mode="json", exclude_defaults=True)


def training_settings(config: ExperimentConfig) -> dict[str, Any]:
    """The settings that determine the trained adapter (see TRAINING_KEY_FIELDS), non-default ones only,
    as `hashed_settings`: experiments that differ elsewhere (inference, evaluation, calibration,
    `dataset.max_n_test`, `model.device`, `model.adapter`) train the very same adapter."""
    settings = hashed_settings(config)
    chosen: dict[str, Any] = {}
    for section, excluded in TRAINING_KEY_FIELDS.items():
        if section in settings:
            chosen[section] = {key: value for key, value in settings[section].items() if key not in excluded}
    resources = config.resources
    if resources.launcher != "python":  # data-parallel ranks multiply the effective batch
        chosen["resources"] = resources.model_dump(mode="json", include={"launcher", "num_processes", "gpus"})
    return chosen


def training_key(config: ExperimentConfig) -> str | None:
    """The hash of `training_settings`: experiments with one key (and seed) share one trained adapter
    (`sft.results.adapters`). None when the experiment trains nothing (zero-shot)."""
    return config_hash(training_settings(config)) if config.trains else None
