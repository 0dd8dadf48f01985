"""The export's contract: `sft_export.json`, one file with everything inference needs besides the
weights and the tokenizer, validated on load together with the files it names.

An export folder holds:

    sft_export.json    this manifest (`Manifest`)
    model/             merged exports: the weights (adapter merged into the base) and the tokenizer
    adapter/           unmerged exports (`--no-merge`): the trained adapter, applied to `weights.base`,
                       and the tokenizer as the run used it

The run's resolved config is kept whole (`config`): the prompt settings (instruction, input columns,
template, truncation), `inference` (batch size, normalization, generation arguments, `icl_examples`)
and the model options all come from it, and its hash must equal `source.config_hash`. What the run
fitted on its data is recorded beside it: the fixed in-context examples, the calibration (method,
prior, gamma) and the multilabel thresholds. A folder whose files are missing or disagree with the
manifest is refused with every problem listed, before any model loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sft.config import ConfigError, ExperimentConfig, parse_config
from sft.config.schema import TaskType
from sft.results.files import atomic_write_text

MANIFEST = "sft_export.json"
FORMAT_VERSION = 1


class Strict(BaseModel):
    # a label whose validation examples are all negative gets an infinite threshold: keep it, as results.json does
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class Weights(Strict):
    """Where the model comes from: `model/` (merged), or `base` with `adapter/` applied on load."""

    merged: bool
    base: str | None = Field(None, description="Unmerged: the base model (hub id or absolute folder).")
    dequantized: bool = Field(False, description="Merged from a 4/8-bit base loaded unquantized.")

    @model_validator(mode="after")
    def _base_when_unmerged(self) -> Weights:
        if not self.merged and not self.base:
            raise ValueError("an unmerged export needs weights.base, the model its adapter applies to")
        return self


class Source(Strict):
    """The run the export came from."""

    run: str
    experiment: str
    seed: int
    config_hash: str
    metrics: dict[str, Any] = Field(default_factory=dict)


class Manifest(Strict):
    format_version: Literal[1] = FORMAT_VERSION
    task_type: TaskType
    predictor: str
    labels: list[str] | None
    config: dict[str, Any] = Field(description="The source run's resolved config.")
    weights: Weights
    chat_template: str | None = Field(None, description="The tokenizer's chat template as the run used it.")
    icl_examples: list[dict[str, Any]] = Field(
        default_factory=list, description="In-context examples shown before every input (the run's fixed draw)."
    )
    icl_drawn_per_input: bool = Field(
        False,
        description="The run drew in-context examples per test input; the export shows its first draw before every "
        "input, so its probabilities differ from the run's.",
    )
    calibration: dict[str, Any] | None = Field(None, description="results.json's calibration: method, prior, gamma.")
    thresholds: dict[str, float] | None = Field(None, description="Multilabel: each label's threshold.")
    source: Source

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        problems = []
        labels = self.labels or []
        if self.thresholds is not None and sorted(self.thresholds) != sorted(labels):
            problems.append(f"thresholds are for {sorted(self.thresholds)}, the labels are {labels}")
        prior = (self.calibration or {}).get("prior")
        if prior is not None and sorted(prior) != sorted(labels):
            problems.append(f"calibration.prior is for {sorted(prior)}, the labels are {labels}")
        if self.config.get("dataset", {}).get("task_type") != self.task_type:
            problems.append(f"task_type {self.task_type!r} is not the config's dataset.task_type")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def experiment_config(self) -> ExperimentConfig:
        """The source run's config, parsed and checked against its recorded hash."""
        config = parse_config(self.config, MANIFEST)
        if config.config_hash() != self.source.config_hash:
            raise ConfigError([f"{MANIFEST}: config does not match source.config_hash; the manifest was edited"])
        return config


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    return atomic_write_text(folder / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


def _weights_present(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))


def file_problems(folder: Path, manifest: Manifest) -> list[str]:
    """What is missing from an export folder, or disagrees with its manifest."""
    problems = []
    if manifest.weights.merged:
        model = folder / "model"
        if not (model / "config.json").is_file() or not _weights_present(model):
            problems.append(f"{model}: no model (config.json and *.safetensors) for a merged export")
        if not (model / "tokenizer_config.json").is_file():
            problems.append(f"{model}: no tokenizer (tokenizer_config.json)")
        problems += _label_problems(model / "config.json", manifest)
    else:
        adapter = folder / "adapter"
        if not (adapter / "adapter_config.json").is_file() or not _weights_present(adapter):
            problems.append(f"{adapter}: no adapter (adapter_config.json and *.safetensors) for an unmerged export")
        if not (adapter / "tokenizer_config.json").is_file():
            problems.append(f"{adapter}: no tokenizer (tokenizer_config.json)")
    return problems


def _label_problems(model_config: Path, manifest: Manifest) -> list[str]:
    """A classifier's own labels (a model config with a problem_type declares them in id2label) must be
    the manifest's, in order."""
    if not model_config.is_file():
        return []
    declared = json.loads(model_config.read_text(encoding="utf-8"))
    if not declared.get("problem_type"):
        return []
    id2label = declared.get("id2label", {})
    model_labels = [id2label[key] for key in sorted(id2label, key=int)]
    if model_labels != (manifest.labels or []):
        return [f"{model_config}: the model's labels {model_labels} are not the manifest's {manifest.labels}"]
    return []


def read_manifest(folder: str | Path) -> Manifest:
    """The validated manifest of an export folder; a ConfigError listing every problem otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ConfigError([f"{folder}: not an sft export (no {MANIFEST}); create one with `sft.cli export RUN OUT`"])
    try:
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        raise ConfigError([f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]) from None
    problems = file_problems(folder, manifest)
    if problems:
        raise ConfigError(problems)
    manifest.experiment_config()
    return manifest
