"""The experiment config: the schema (one pydantic model per section, every default), grids of
experiments, and whole-grid validation. Importing this package imports no heavy library."""

from sft.config.errors import ConfigError
from sft.config.parsing import check_command, describe_errors, parse_config
from sft.config.schema import (
    DEFAULT_SEED,
    CalibrationConfig,
    DatasetConfig,
    EvaluationConfig,
    ExperimentConfig,
    InferenceConfig,
    LoraSection,
    ModelArgs,
    ModelConfig,
    PromptingConfig,
    QuantizationConfig,
    ResourcesConfig,
    TaskType,
    TrainingConfig,
    config_hash,
    seed_problem,
)

__all__ = [
    "DEFAULT_SEED",
    "CalibrationConfig",
    "ConfigError",
    "DatasetConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "InferenceConfig",
    "LoraSection",
    "ModelArgs",
    "ModelConfig",
    "PromptingConfig",
    "QuantizationConfig",
    "ResourcesConfig",
    "TaskType",
    "TrainingConfig",
    "check_command",
    "config_hash",
    "describe_errors",
    "parse_config",
    "seed_problem",
]
