"""The config of one experiment: its sections (`sft.config.schema`) and the rules that tie sections
together, validated once, every error reported at once.

Only rules that need nothing beyond the config live here. The rules that depend on what a task or a
predictor accepts (a head on a generation task, calibration of a head, ...) and the names of other
packages' registries (calibrations, initializers, metrics) are checked by `sft.experiment.checks`,
which asks the task and predictor objects, before anything runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

import sft.config.hashing as hashing
from sft.config.schema import (
    DatasetConfig,
    EvaluationConfig,
    InferenceConfig,
    LoraSection,
    ModelConfig,
    PromptingConfig,
    ResourcesConfig,
    SearchConfig,
    Section,
    StructuredConfig,
    TrainingConfig,
)

SECTIONS = (
    "dataset", "model", "lora", "prompting", "training", "inference", "evaluation", "resources", "search", "structured",
)  # fmt: skip


class ExperimentConfig(Section):
    dataset: DatasetConfig = Field(description="The data, the task type and the shots.")
    model: ModelConfig = Field(description="The base model and how it loads.")
    prompting: PromptingConfig = Field(description="How an example becomes a prompt and an answer.")
    lora: LoraSection | None = Field(None, description="The LoRA adapter; required when a command trains.")
    training: TrainingConfig | None = Field(None, description="How the adapter trains; required when a command trains.")
    inference: InferenceConfig = Field(
        default_factory=InferenceConfig, description="How test prompts are built and scored."
    )
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="The metrics and their options.")
    resources: ResourcesConfig = Field(
        default_factory=ResourcesConfig, description="How the grid runner runs the experiment."
    )
    search: SearchConfig | None = Field(
        None,
        description="Choose hyperparameters on the validation split before the test runs (docs/search.md); "
        "null: no search.",
    )
    structured: StructuredConfig = Field(
        default_factory=StructuredConfig,
        description="Structured outputs: the JSON Schema, constrained decoding, regex / choice constraints.",
    )

    @model_validator(mode="after")
    def _calibrated_once(self) -> ExperimentConfig:
        if self.inference.normalization == "pmi" and self.inference.calibration_args.calibration_fn in (
            "contextual",
            "domain",
        ):
            raise ValueError(
                "inference.normalization 'pmi' already divides by the content-free prompt's label probabilities; "
                f"calibrating it with {self.inference.calibration_args.calibration_fn!r} corrects twice: choose one"
            )
        return self

    @model_validator(mode="after")
    def _evaluation_has_validation(self) -> ExperimentConfig:
        training = self.training
        if training is None:
            return self
        carved, named = training.validation_from_train is not None, self.dataset.validation_split is not None
        if carved and named:
            raise ValueError(
                "training.validation_from_train: the dataset already names dataset.validation_split; remove one"
            )
        if training.evaluates() and not (carved or named):
            raise ValueError(
                "training.eval_every: evaluation during training needs a validation split; set "
                "dataset.validation_split, or training.validation_from_train to carve one out of the training split"
            )
        if carved and not training.evaluates():
            raise ValueError("training.validation_from_train: only training.eval_every uses it; set both or neither")
        return self

    @property
    def trains(self) -> bool:
        """Few-shot experiments train an adapter; zero-shot ones use the model as it is."""
        return self.dataset.shots > 0

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as plain JSON data."""
        return self.model_dump(mode="json")

    def hashed_settings(self) -> dict[str, Any]:
        """The settings that differ from the schema's defaults (`sft.config.hashing`)."""
        return hashing.hashed_settings(self)

    def config_hash(self) -> str:
        return hashing.config_hash(self.hashed_settings())

    def training_settings(self) -> dict[str, Any]:
        """The settings that determine the trained adapter (`sft.config.hashing.TRAINING_KEY_FIELDS`)."""
        return hashing.training_settings(self)

    def training_key(self) -> str | None:
        """The key of the trained adapter, shared by experiments with equal `training_settings`; None when
        the experiment trains nothing (zero-shot)."""
        return hashing.training_key(self)
