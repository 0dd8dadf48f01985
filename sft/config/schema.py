"""The experiment config: one pydantic model per section, validated once, every error reported at once.

Defaults live here and nowhere else. The rest of the package receives an `ExperimentConfig` and reads
its fields; it never looks keys up in raw dicts. Two hashes identify work: `config_hash` (the
experiment: every non-default setting) and `training_key` (its trained adapter: the settings listed in
`TRAINING_KEY_FIELDS`, with the reason for each; experiments that share it train once per seed).
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator

from sft.registry import did_you_mean

TaskType = Literal["classification", "generation", "multilabel"]
# The seed of a single run when none is given (`--random-seed`, `run-experiments` without --seeds).
DEFAULT_SEED = 42
# `resources.num_processes` of an `accelerate` experiment on CPU (no GPUs to count).
DEFAULT_CPU_PROCESSES = 2
# `inference.calibration_args.num_estimations` of `domain` calibration: the paper's 20 random strings.
DOMAIN_ESTIMATIONS = 20
# Input tokens a classification head reads when `prompting.max_input_length` is not set (or less, when
# the tokenizer's own limit is lower).
HEAD_MAX_LENGTH = 512
# `inference.threshold_examples`: validation examples multilabel thresholds are tuned on. Scoring every
# example of a large validation split (5,426 in GoEmotions) costs more than the test itself, while a few
# hundred examples already pin a threshold down to a few hundredths.
THRESHOLD_EXAMPLES = 1000
# Seeds numpy's legacy global seeding (transformers.set_seed) accepts: 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
SECTIONS = ("dataset", "model", "lora", "prompting", "training", "inference", "evaluation", "resources")

# PEFT's own initializations: the name a config uses -> the value peft.LoraConfig gets. `pissa` names
# sft's simplified PiSSA (sft.model.initialization), so PEFT's (which rewrites the base weight into the residual
# W - W_r) is `pissa_residual`; `pissa_niter_<n>` (PEFT's fast-SVD PiSSA) is matched separately.
PEFT_INITIALIZATIONS = {
    "gaussian": "gaussian",
    "pissa_residual": "pissa",
    "olora": "olora",
    "orthogonal": "orthogonal",
    "loftq": "loftq",
    "mica": "mica",
}
# PEFT initializations that need a pass over data before training, which sft does not run (yet).
DATA_DRIVEN_INITIALIZATIONS = {
    "eva": "peft.initialize_lora_eva_weights",
    "corda": "peft.tuners.lora.corda.preprocess_corda",
    "lora_ga": "peft.tuners.lora.lora_ga.preprocess_loraga",
}


def seed_problem(seed: Any, where: str) -> str | None:
    """Why `seed` cannot seed a run (numpy, torch and random must all accept it), or None."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        return f"{where}: seed {seed!r} is out of range; give whole numbers from 0 to {MAX_SEED}"
    return None


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
# - the seed is not a config field: the store keeps one adapter per key and seed.
TRAINING_KEY_FIELDS: dict[str, frozenset[str]] = {
    "dataset": frozenset({"max_n_test"}),
    "model": frozenset({"device", "adapter"}),
    "lora": frozenset(),
    "prompting": frozenset(),
    "training": frozenset(),
}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # a bool or float never passes for an int


class DatasetConfig(Section):
    path: str = Field(
        description="A hub dataset id, a save_to_disk folder, a folder of data files named after their split "
        "(train.jsonl, test.csv, ...), or one data file (json, jsonl, csv, tsv or parquet, read as split train)."
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description='Extra arguments for datasets.load_dataset, e.g. {"name": "sentiment"} (a hub dataset\'s '
        'config), or data_files with path "json".',
    )
    task_type: TaskType = Field(
        "classification",
        description="classification (one label per example), multilabel (the output column holds a list of "
        "labels) or generation (free text).",
    )
    shots: int = Field(
        0,
        ge=0,
        description="Training examples per label (classification) or in all (generation), sampled without "
        "replacement, the same for a seed; a label with fewer examples gives all it has (with a warning). "
        "0: zero-shot, no adapter and no training.",
    )
    max_n_test: int | None = Field(
        None,
        ge=1,
        description="Evaluate on at most this many test examples: a fixed random subset, the same for every seed "
        "and experiment; null: all of them.",
    )
    train_split: str = Field("train", description="The split shots and in-context examples come from.")
    test_split: str = Field("test", description="The split that is predicted and scored.")
    validation_split: str | None = Field(
        None,
        description="The validation split (model selection during training, tuned multilabel thresholds). When "
        "it is not set, multilabel runs that tune thresholds use the split called validation, dev or val (and "
        "say so in the log and results.json); with none of them, validation stops with an error.",
    )
    labels: list[str] | None = Field(
        None,
        description="The label set, in this order; labels in the data outside it are an error. Default: the "
        "labels of the data, sorted (integer ClassLabel values become their names).",
    )

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None:
            if len(labels) < 2:
                raise ValueError("give at least two labels")
            duplicates = sorted({label for label in labels if labels.count(label) > 1})
            if duplicates:
                raise ValueError(f"labels must be unique; repeated: {duplicates}")
        return labels


class QuantizationConfig(Section):
    config_class: str = Field(
        description="A class of transformers.utils.quantization_config: BitsAndBytesConfig, GPTQConfig, "
        "AwqConfig, HqqConfig, TorchAoConfig, ..."
    )
    args: dict[str, Any] = Field(default_factory=dict, description="The arguments of that class.")


class ModelArgs(BaseModel):
    """`model.model_args`: arguments for from_pretrained (any key it takes), plus sft's own placement
    settings, which never reach from_pretrained (see sft/model/placement.py)."""

    model_config = ConfigDict(extra="allow", strict=True)

    parallelize: StrictBool = Field(
        False, description="Spread the model over every visible GPU with a balanced accelerate device map."
    )
    no_split_module_classes: list[StrictStr] | None = Field(
        None, description="parallelize: module classes kept on one device; default: the model's own."
    )

    @field_validator("parallelize", mode="before")
    @classmethod
    def _a_bool(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError("model_args.parallelize must be true or false")
        return value

    @field_validator("no_split_module_classes", mode="before")
    @classmethod
    def _class_names(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
            raise ValueError("model_args.no_split_module_classes must be a list of module class names")
        return value

    @model_validator(mode="after")
    def _no_shadowed_fields(self) -> ModelArgs:
        # These have their own fields; accepting them here too would let model_args silently win
        # (e.g. run remote code while model.trust_remote_code says false).
        owned = {
            "trust_remote_code": "model.trust_remote_code",
            "revision": "model.revision",
            "dtype": "model.dtype",
            "torch_dtype": "model.dtype",
            "quantization_config": "model.quantization",
        }
        extra = self.model_extra or {}
        clashes = [f"{key} (use {owned[key]})" for key in extra if key in owned]
        if clashes:
            raise ValueError(f"model_args must not set {', '.join(clashes)}")
        if self.parallelize and "device_map" in extra:
            raise ValueError("model_args.parallelize computes the device_map; don't set both")
        return self

    def from_pretrained_args(self) -> dict[str, Any]:
        """The arguments passed through to from_pretrained (sft's placement settings left out)."""
        return dict(self.model_extra or {})


class ModelConfig(Section):
    name: str = Field(description="Hub model id or local folder.")
    revision: str | None = Field(None, description="Hub revision of the model (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Run code shipped with the model; only when you trust it.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="'auto': the checkpoint's dtype on GPU, float32 on CPU."
    )
    device: str | None = Field(None, description="e.g. 'cpu' or 'cuda:1'; default: cuda when available, else cpu.")
    model_args: ModelArgs = Field(
        default_factory=ModelArgs,
        description="Extra arguments for from_pretrained (e.g. attn_implementation, device_map), plus sft's "
        "parallelize and no_split_module_classes.",
    )
    quantization: QuantizationConfig | None = Field(
        None, description="Load the model quantized, through a transformers quantization config named by class."
    )
    chat_template: str | None = Field(
        None, description="A Jinja chat template, or a path to a .jinja file, for models without one."
    )
    chat_template_from: str | None = Field(
        None, description="Take the chat template of this other model (e.g. when a quantized copy ships a broken one)."
    )
    adapter: str | None = Field(None, description="A trained adapter folder to load for predict/evaluate.")
    head: Literal["classification"] | None = Field(
        None, description="'classification': a sequence-classification head instead of generative scoring."
    )

    @model_validator(mode="after")
    def _one_template_source(self) -> ModelConfig:
        if self.chat_template is not None and self.chat_template_from is not None:
            raise ValueError("can't provide both chat_template and chat_template_from. Choose one.")
        return self

    @model_validator(mode="after")
    def _parallelize_without_device(self) -> ModelConfig:
        if self.model_args.parallelize and self.device is not None:
            raise ValueError(
                "model_args.parallelize uses every visible GPU; remove model.device (or set CUDA_VISIBLE_DEVICES)"
            )
        return self


class LoraSection(BaseModel):
    """Arguments of peft.LoraConfig. The usual ones are typed here; any other LoraConfig field is accepted
    and checked against peft by `sft.config.validation` (it costs a peft import, so it is not done here)."""

    model_config = ConfigDict(extra="allow", strict=True)

    task_type: Literal["CAUSAL_LM", "SEQ_CLS"] = Field("CAUSAL_LM", description="Set by sft from model.head.")
    r: int = Field(8, ge=1, description="The rank of the LoRA update.")
    lora_alpha: float = Field(16, gt=0, description="The update is scaled by lora_alpha / r (/ sqrt(r) with rsLoRA).")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the input of the LoRA branch.")
    target_modules: list[str] | str | None = Field(
        "all-linear", description="The modules that get an adapter: names, a regular expression, or 'all-linear'."
    )
    bias: Literal["none", "all", "lora_only"] = Field(
        "none", description="Which biases train: none, all, or those of the adapted layers."
    )
    init_lora_weights: bool | str = Field(
        True,
        description="true (PEFT's default), false, an sft initializer (pca, pissa, umap) or a PEFT initialization "
        "(gaussian, pissa_residual, pissa_niter_<n>, olora, orthogonal, mica, loftq).",
    )
    init_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the sft initializer, e.g. {'n_neighbors': 10} for umap, {'niter': 4} "
        "for a randomized SVD in pca or pissa.",
    )
    use_rslora: bool = Field(False, description="Rank-stabilized LoRA: scale by lora_alpha / sqrt(r).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    modules_to_save: list[str] | None = Field(None, description="Modules trained in full and saved with the adapter.")

    @field_validator("init_lora_weights")
    @classmethod
    def _known_initialization(cls, value: bool | str) -> bool | str:
        from sft.model.initialization.registry import INITIALIZERS

        if not isinstance(value, str) or value in INITIALIZERS or value in PEFT_INITIALIZATIONS:
            return value
        if re.fullmatch(r"pissa_niter_\d+", value):
            return value
        if value in DATA_DRIVEN_INITIALIZATIONS:
            raise ValueError(
                f"PEFT's {value!r} initialization needs a pass over training data "
                f"({DATA_DRIVEN_INITIALIZATIONS[value]}) that sft does not run; choose another initialization"
            )
        names = [*sorted(INITIALIZERS), *PEFT_INITIALIZATIONS]
        choices = ", ".join([*names, "pissa_niter_<n>", "true", "false"])
        raise ValueError(f"unknown initialization {value!r}{did_you_mean(value, names)}; choose from {choices}")

    @model_validator(mode="after")
    def _initialization_arguments(self) -> LoraSection:
        if self.init_args and not self.custom_initializer:
            raise ValueError("init_args is only for sft initializers (pca, pissa, umap, ...), not PEFT's")
        if self.init_lora_weights == "loftq" and not (self.model_extra or {}).get("loftq_config"):
            raise ValueError('loftq needs lora.loftq_config, e.g. {"loftq_bits": 4, "loftq_iter": 1}')
        return self

    @property
    def custom_initializer(self) -> str | None:
        """The sft initializer named by init_lora_weights, or None for PEFT's own initializations."""
        from sft.model.initialization.registry import INITIALIZERS

        value = self.init_lora_weights
        return value if isinstance(value, str) and value in INITIALIZERS else None

    def peft_kwargs(self) -> dict[str, Any]:
        """peft.LoraConfig arguments. An sft initializer starts from PEFT's default (B = 0) and is applied to
        the PEFT model afterwards (sft.model.initialization.apply)."""
        kwargs = self.model_dump(exclude={"init_args"})
        value = self.init_lora_weights
        if self.custom_initializer:
            kwargs["init_lora_weights"] = True
        elif isinstance(value, str):
            kwargs["init_lora_weights"] = PEFT_INITIALIZATIONS.get(value, value)
        return kwargs


class PromptingConfig(Section):
    instruction: str = Field(
        "",
        description="The task instruction: the system turn, or the start of the first user turn when the chat "
        "template has no system role.",
    )
    input_columns: list[str] = Field(
        min_length=1,
        description="The columns shown to the model: one column as it is, several as `column: text` lines "
        "unless input_template says otherwise.",
    )
    output_column: str = Field(
        description="The label or target text: the answer in training, the reference in evaluation."
    )
    input_template: str | None = Field(
        None,
        description="How input columns form the user turn, e.g. 'Premise: {premise}\\nHypothesis: {hypothesis}'; "
        "placeholders must be input columns.",
    )
    max_input_length: int | None = Field(None, ge=1, description="Truncate each input text to this many tokens.")
    max_output_length: int | None = Field(
        None,
        ge=1,
        description="Truncate answers in training prompts and in-context examples to this many tokens "
        "(references are never truncated).",
    )
    label_separator: str = Field(
        ", ",
        min_length=1,
        description="Multilabel: joins an example's labels (in label order) into the answer, e.g. 'joy, neutral'.",
    )

    @model_validator(mode="after")
    def _columns_consistent(self) -> PromptingConfig:
        if self.output_column in self.input_columns:
            raise ValueError(f"output_column {self.output_column!r} is also an input column; the answer would leak")
        if self.input_template is not None:
            names = {field for _, field, _, _ in string.Formatter().parse(self.input_template) if field}
            unknown = sorted(names - set(self.input_columns))
            if unknown:
                raise ValueError(f"input_template uses {unknown}, which are not in input_columns {self.input_columns}")
        return self


class TrainingConfig(Section):
    icl_examples: int = Field(
        0,
        ge=0,
        description="In-context examples in each training prompt: per label for classification, in all for "
        "generation; drawn from the other shots, never the example itself.",
    )
    trainer_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments for trl.SFTConfig (epochs, learning rate, batch size, max_length, ...); "
        "transformers.TrainingArguments in head mode. output_dir defaults to checkpoints/ in the run folder, bf16 "
        "is on only on GPUs that support it, and seed follows --random-seed.",
    )
    class_weights: Literal["balanced"] | list[float] | None = Field(
        None,
        description="Head mode: 'balanced' or one loss weight per label (multilabel: BCE pos_weight; balanced = "
        "negatives / positives).",
    )
    # Model selection during training (sft.training.selection): evaluate on the validation split with the
    # task's own metric, keep the best adapter, optionally stop early.
    eval_every: int | None = Field(
        None, ge=1, description="Evaluate on the validation split every this many `eval_unit`; null: never."
    )
    eval_unit: Literal["epochs", "steps"] = Field("epochs", description="What `eval_every` counts.")
    eval_examples: int | None = Field(
        None, ge=1, description="Evaluate on at most this many validation examples (one subset for every seed)."
    )
    metric: str | None = Field(
        None,
        description="What picks the best adapter: a result key of the task's metrics (e.g. f1_macro) or 'loss' "
        "(validation loss); default: the task's headline metric.",
    )
    eval_loss: bool = Field(
        True, description="Also compute the validation loss (a second forward pass over the evaluation examples)."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement of `metric`."
    )
    validation_from_train: int | None = Field(
        None,
        ge=1,
        description="Carve this many examples (stratified per label, the same for every seed, never shots) out of "
        "the training split as the validation split, for a dataset without one.",
    )

    @model_validator(mode="after")
    def _selection_needs_evaluation(self) -> TrainingConfig:
        if self.eval_every is None:
            needing = [
                key
                for key, value in (
                    ("early_stopping_patience", self.early_stopping_patience),
                    ("metric", self.metric),
                    ("eval_examples", self.eval_examples),
                )
                if value is not None
            ]
            if needing:
                keys = ", ".join(f"training.{key}" for key in needing)
                raise ValueError(
                    f"{keys}: needs evaluation during training; set training.eval_every (e.g. 1, with "
                    "eval_unit 'epochs') or remove them"
                )
        if self.metric == "loss" and not self.eval_loss:
            raise ValueError("training.metric 'loss' needs the validation loss; remove training.eval_loss: false")
        return self

    def evaluates(self) -> bool:
        """Whether training evaluates on the validation split (and so keeps the best adapter)."""
        return self.eval_every is not None


class CalibrationConfig(Section):
    """`inference.calibration_args`: which calibration (sft/scoring/calibration.py) and its estimation options."""

    calibration_fn: str | None = Field(
        None, description="contextual, domain, batch or adjustable_batch (see sft.scoring.calibration); null: off."
    )
    content_free_inputs: list[str] = Field(
        default_factory=lambda: ["N/A", "", "[MASK]"],
        min_length=1,
        description="contextual: the content-free inputs that replace every input column of the prompt.",
    )
    num_estimations: int | None = Field(
        None, ge=1, description="domain: random strings averaged (default 20); batch: prior from the first n tests."
    )
    estimate_per_prompt: bool = Field(
        True, description="contextual/domain with per-example in-context examples: one prior per test prompt."
    )
    gamma_grid: list[float] = Field(
        default_factory=lambda: [i / 10 for i in range(21)],
        min_length=1,
        description="adjustable_batch: the candidate strengths gamma.",
    )
    gamma_metric: Literal["accuracy", "f1_macro"] = Field(
        "accuracy", description="adjustable_batch: the metric that picks gamma on the labelled examples."
    )
    labelled_examples: int = Field(64, ge=1, description="adjustable_batch: labelled examples that choose gamma.")
    seed: int | None = Field(None, description="For random strings and labelled examples; default: the run seed.")

    def domain_estimations(self) -> int:
        """Random in-domain strings `domain` calibration averages over."""
        return self.num_estimations or DOMAIN_ESTIMATIONS

    @field_validator("calibration_fn")
    @classmethod
    def _registered(cls, name: str | None) -> str | None:
        from sft.scoring.registry import CALIBRATIONS

        problems = CALIBRATIONS.unknown([name] if name is not None else [])
        if problems:
            raise ValueError(problems[0])
        return name


class InferenceConfig(Section):
    icl_examples: int = Field(
        0,
        ge=0,
        description="In-context examples in each test prompt (per label for classification), drawn from the "
        "shots when there are any, else from the training split; never from the test split.",
    )
    icl_fixed: bool = Field(
        False, description="Show the same in-context examples in every test prompt instead of drawing them per example."
    )
    batch_size: int = Field(8, ge=1, description="Prompts per forward pass (and per generate call).")
    max_seq_length: int | None = Field(
        None,
        ge=8,
        description="Longest prompt in tokens. Longer prompts first lose in-context examples, then input text, so "
        "the chat format stays intact.",
    )
    thresholds: Literal["global", "per_label"] | float = Field(
        "global",
        description="Multilabel: 'global' (one threshold maximizing micro-F1 on the validation split), "
        "'per_label' (each label's F1-best one), or a fixed number. Tuned thresholds need a validation split.",
    )
    threshold_examples: int | None = Field(
        THRESHOLD_EXAMPLES,
        ge=1,
        description="Multilabel: tune thresholds on at most this many validation examples (the same subset for "
        "every seed; each costs as much scoring as a test example); null: all of them.",
    )
    generation_args: dict[str, Any] = Field(
        default_factory=lambda: {"max_new_tokens": 64}, description="Arguments for model.generate (generation tasks)."
    )
    normalization: Literal["sum", "mean", "per_char", "pmi"] = Field(
        "sum",
        description="Label score compared across labels: summed log-likelihood, its mean per token, per "
        "character, or pmi (minus the label's log-likelihood after the prompt with input 'N/A').",
    )
    calibration_args: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="Calibration of label probabilities; off by default."
    )


class EvaluationConfig(Section):
    metrics: list[str] | None = Field(
        None,
        description="Metric names from the registry sft.evaluation.metrics.METRICS; default: every metric of the "
        "task type.",
    )
    tokenizer_name: str | None = Field(None, description="A HF tokenizer that splits words for BLEU and ROUGE.")
    bleu_tokenize: str = Field("13a", description="sacrebleu tokenizer when tokenizer_name is not set.")
    ece_bins: int = Field(10, ge=1, description="Bins of the expected calibration error.")


class ResourcesConfig(Section):
    """How the grid runner runs the experiment. Part of the config hash like every section: data-parallel
    training changes the effective batch size, so a changed launcher must not count as finished."""

    gpus: int = Field(1, ge=1, description="GPUs the experiment takes from `run-experiments --gpus`.")
    launcher: Literal["python", "accelerate"] = Field(
        "python", description="'accelerate': data-parallel training through `accelerate launch`."
    )
    num_processes: int | None = Field(
        None, ge=1, description="Processes of `accelerate launch`; default: one per GPU (CPU: 2)."
    )
    cpus: int | None = Field(
        None,
        ge=1,
        description="CPU cores the experiment takes on a cluster (Ray num_cpus, Slurm --cpus-per-task); "
        "default: one per process. Locally each --jobs slot gets its share of the machine's cores.",
    )
    memory_gb: float | None = Field(
        None, gt=0, description="Memory the experiment asks Slurm for (--mem); default: the partition's."
    )
    ray_resources: dict[str, float] | None = Field(
        None, description='Ray custom resources the experiment needs, e.g. {"a100": 1}; only nodes with them run it.'
    )

    def processes(self, gpus: int = 0) -> int:
        """Processes the experiment runs as: 1 (python launcher), else num_processes, one per GPU given
        (`gpus`), or DEFAULT_CPU_PROCESSES on CPU."""
        if self.launcher != "accelerate":
            return 1
        return self.num_processes or gpus or DEFAULT_CPU_PROCESSES


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

    @model_validator(mode="after")
    def _calibration_classifies(self) -> ExperimentConfig:
        if self.inference.calibration_args.calibration_fn and self.dataset.task_type != "classification":
            raise ValueError(
                "inference.calibration_args.calibration_fn applies to single-label classification only; remove it"
            )
        if self.inference.calibration_args.calibration_fn and self.model.head is not None:
            raise ValueError(
                "inference.calibration_args.calibration_fn calibrates label scoring, not a classification head; "
                "remove it or model.head"
            )
        if self.inference.normalization == "pmi" and self.inference.calibration_args.calibration_fn in (
            "contextual",
            "domain",
        ):
            raise ValueError(
                "inference.normalization 'pmi' already divides by the content-free prompt's label probabilities; "
                f"calibrating it with {self.inference.calibration_args.calibration_fn!r} corrects twice: choose one"
            )
        if self.inference.normalization != "sum" and (
            self.model.head is not None or self.dataset.task_type != "classification"
        ):
            raise ValueError(
                "inference.normalization applies to label scoring of single-label classification; "
                "remove it (a head and multilabel scoring use their own probabilities)"
            )
        return self

    @model_validator(mode="after")
    def _head_fits_task(self) -> ExperimentConfig:
        if self.model.head is not None and self.dataset.task_type == "generation":
            raise ValueError("model.head: a classification head cannot generate; use classification or multilabel")
        head_ignores = [
            key
            for key, value in (
                ("inference.icl_examples", self.inference.icl_examples),
                ("training.icl_examples", self.training.icl_examples if self.training else 0),
            )
            if value
        ]
        if self.model.head is not None and head_ignores:
            raise ValueError(
                f"{', '.join(head_ignores)}: a classification head reads the input alone, without in-context "
                "examples; remove them or model.head"
            )
        if self.model.head is None and self.training is not None and self.training.class_weights is not None:
            raise ValueError("training.class_weights applies to model.head: 'classification' only; remove it")
        init = str(self.lora.init_lora_weights).lower() if self.lora is not None else ""
        if self.model.head is not None and (init.startswith("pissa_") or init == "olora"):
            # PEFT cannot convert such an adapter back onto the original weights when a head is in
            # modules_to_save, so a saved head adapter would not reload on the untouched checkpoint.
            raise ValueError(
                f"lora.init_lora_weights: {self.lora.init_lora_weights!r} rewrites the base weights, which head mode "
                "cannot save reloadably; use sft's 'pissa' (base untouched), 'pca', 'umap' or 'gaussian'"
            )
        if self.model.head is None and self.lora is not None and self.lora.task_type == "SEQ_CLS":
            raise ValueError('lora.task_type: SEQ_CLS needs model.head: "classification" (sft sets it in head mode)')
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
    def tunes_thresholds(self) -> bool:
        """Multilabel thresholds 'global' or 'per_label' are tuned on a validation split (a number is fixed)."""
        return self.dataset.task_type == "multilabel" and isinstance(self.inference.thresholds, str)

    @property
    def trains(self) -> bool:
        """Few-shot experiments train an adapter; zero-shot ones use the model as it is."""
        return self.dataset.shots > 0

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as plain JSON data."""
        return self.model_dump(mode="json")

    def hashed_settings(self) -> dict[str, Any]:
        """The settings that differ from the schema's defaults: what identifies an experiment. A setting
        sft adds later with a default (or a default spelled out) leaves every existing hash as it was, so
        resuming a grid never re-runs finished work because sft grew a field."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def config_hash(self) -> str:
        return config_hash(self.hashed_settings())

    def training_settings(self) -> dict[str, Any]:
        """The settings that determine the trained adapter (see TRAINING_KEY_FIELDS), non-default ones only,
        as `hashed_settings`: experiments that differ elsewhere (inference, evaluation, calibration,
        `dataset.max_n_test`, `model.device`, `model.adapter`) train the very same adapter."""
        settings = self.hashed_settings()
        chosen: dict[str, Any] = {}
        for section, excluded in TRAINING_KEY_FIELDS.items():
            if section in settings:
                chosen[section] = {key: value for key, value in settings[section].items() if key not in excluded}
        resources = self.resources
        if resources.launcher != "python":  # data-parallel ranks multiply the effective batch
            chosen["resources"] = resources.model_dump(mode="json", include={"launcher", "num_processes", "gpus"})
        return chosen

    def training_key(self) -> str | None:
        """The hash of `training_settings`: experiments with one key (and seed) share one trained adapter
        (`sft.results.adapters`). None when the experiment trains nothing (zero-shot)."""
        return config_hash(self.training_settings()) if self.trains else None


def config_hash(resolved: dict[str, Any]) -> str:
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
