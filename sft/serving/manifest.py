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
prior, gamma), the multilabel thresholds and a structured task's JSON Schema. A folder whose files are
missing or disagree with the manifest is refused with every problem listed, before any model loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sft.config import ConfigError, ExperimentConfig, parse_config
from sft.config.schema import TaskType
from sft.results.records import Record, RecordError

R = TypeVar("R", bound=Record)

MANIFEST = "sft_export.json"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _from_format_version(data: dict[str, Any]) -> dict[str, Any]:
    """Manifests before records were versioned carried `format_version: 1` instead of schema_version."""
    found = data.get("format_version")
    if found != 1:
        raise ValueError(f"format_version {found!r} is not one this sft reads (1)")
    return {key: value for key, value in data.items() if key != "format_version"}


class Weights(Strict):
    """Where the model comes from: `model/` (merged), or `base` with `adapter/` applied on load."""

    merged: bool = Field(description="The adapter is merged into the weights in `model/`.")
    base: str | None = Field(default=None, description="Unmerged: the base model (hub id or absolute folder).")
    dequantized: bool = Field(default=False, description="Merged from a 4/8-bit base loaded unquantized.")

    @model_validator(mode="after")
    def _base_when_unmerged(self) -> Weights:
        if not self.merged and not self.base:
            raise ValueError("an unmerged export needs weights.base, the model its adapter applies to")
        return self


class Source(Strict):
    """The run the export came from."""

    run: str = Field(description="The run folder (absolute).")
    experiment: str = Field(description="The run's experiment.")
    seed: int = Field(description="The run's seed.")
    config_hash: str = Field(description="The run's config hash; `config` must hash to it.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="The run's test metrics (results.json's).")


class Manifest(Strict, Record):
    """`sft_export.json`, in an export folder: everything inference needs besides the weights and the
    tokenizer, written by `export`, read (with the files it names) by `predict --input`, `serve`,
    `load_export` and the SageMaker handler."""

    FILE: ClassVar[str] = MANIFEST
    UPGRADES: ClassVar[dict[int, Any]] = {0: _from_format_version}
    OMIT_WHEN_NULL: ClassVar[frozenset[str]] = frozenset({"output_schema"})

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    task_type: TaskType = Field(description="`dataset.task_type` of the run.")
    predictor: str = Field(
        description="The predictor the run used (label scoring, label-set scoring, generation, head)."
    )
    labels: list[str] | None = Field(description="The label set, in order; null for generation.")
    config: dict[str, Any] = Field(description="The source run's resolved config.")
    weights: Weights = Field(description="Where the model comes from.")
    chat_template: str | None = Field(default=None, description="The tokenizer's chat template as the run used it.")
    icl_examples: list[dict[str, Any]] = Field(
        default_factory=list, description="In-context examples shown before every input (the run's fixed draw)."
    )
    icl_drawn_per_input: bool = Field(
        False,
        description="The run drew in-context examples per test input; the export shows its first draw before every "
        "input, so its probabilities differ from the run's.",
    )
    calibration: dict[str, Any] | None = Field(
        default=None, description="results.json's calibration: method, prior, gamma."
    )
    thresholds: dict[str, float] | None = Field(default=None, description="Multilabel: each label's threshold.")
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="Structured: the JSON Schema every answer fits and is decoded under (results.json's).",
    )
    source: Source = Field(description="The run the export came from.")

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
    return manifest.write(folder / MANIFEST)


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


def read_record(model: type[R], path: Path) -> R:
    """A record the serving commands need, its problems as a ConfigError (exit 2 with the file named)."""
    try:
        return model.read(path)
    except RecordError as error:
        raise ConfigError(error.messages) from None
    except ValueError as error:
        raise ConfigError([f"{path}: not JSON ({error})"]) from None


def read_manifest(folder: str | Path) -> Manifest:
    """The validated manifest of an export folder; a ConfigError listing every problem otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ConfigError([f"{folder}: not an sft export (no {MANIFEST}); create one with `sft.cli export RUN OUT`"])
    manifest = read_record(Manifest, path)
    problems = file_problems(folder, manifest)
    if problems:
        raise ConfigError(problems)
    manifest.experiment_config()
    return manifest
