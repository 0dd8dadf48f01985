"""The experiment config: the schema (one pydantic model per section, every default), the experiment's
config with the rules across its sections, its hashes, and grids of experiments. This package imports
no other sft package but the registry type and the results records, and no heavy library: the
whole-grid checks that need tasks, data, models or other packages' registries are
`sft.experiment.checks`."""

from sft.config.errors import ConfigError
from sft.config.experiment import SECTIONS, ExperimentConfig
from sft.config.hashing import TRAINING_KEY_FIELDS, config_hash
from sft.config.parsing import check_command, describe_errors, parse_config
from sft.config.schema import (
    DEFAULT_SEED,
    HEAD_MAX_LENGTH,
    PEFT_INITIALIZATIONS,
    THRESHOLD_EXAMPLES,
    CalibrationConfig,
    DatasetConfig,
    EvaluationConfig,
    InferenceConfig,
    LoraSection,
    ModelArgs,
    ModelConfig,
    PromptingConfig,
    QuantizationConfig,
    ResourcesConfig,
    TaskType,
    TrainingConfig,
    seed_problem,
)

__all__ = [
    "DEFAULT_SEED",
    "HEAD_MAX_LENGTH",
    "PEFT_INITIALIZATIONS",
    "SECTIONS",
    "THRESHOLD_EXAMPLES",
    "TRAINING_KEY_FIELDS",
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
