"""The schema of the experiment config: one pydantic model per section, every default.

Defaults live here and nowhere else. The rest of the package receives an `ExperimentConfig`
(`sft.config.experiment`: the sections together, and the rules across them) and reads its fields; it
never looks keys up in raw dicts. A section checks what it can know alone: its types, ranges and the
rules among its own fields. Names kept in other packages' registries (an sft initializer, a
calibration, a metric) are checked with the whole grid by `sft.experiment.checks`, so the config
imports no other sft package.
"""

from __future__ import annotations

import re
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator, model_validator

from sft.config.adapters import ADAPTERS, DEFAULT_METHOD, adapter_traits, owners
from sft.registry import did_you_mean

TaskType = Literal["classification", "generation", "multilabel", "structured"]
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
    "eva": "eva",
    "corda": "corda",
}
# PEFT's data-driven initializations that sft runs over the experiment's own training inputs before training
# (sft.model.initialization.data_driven): name -> the lora key that holds its settings (PEFT's sub-config).
DATA_DRIVEN_INITIALIZATIONS = {"eva": "eva_config", "corda": "corda_config"}
# PEFT initializations that need a pass over data before training which sft does not run (yet).
UNRUN_INITIALIZATIONS = {"lora_ga": "peft.tuners.lora.lora_ga.preprocess_loraga"}


def peft_initialization(name: str) -> bool:
    """Whether `name` is one of PEFT's own initializations (passed on to peft.LoraConfig)."""
    return name in PEFT_INITIALIZATIONS or re.fullmatch(r"pissa_niter_\d+", name) is not None


def rewrites_base(peft_value: Any) -> bool:
    """Whether PEFT's initialization `peft_value` (as peft.LoraConfig gets it) rewrites the base weights into a
    residual the adapter is relative to (PiSSA, OLoRA, CorDA): the adapter is saved converted
    (`sft.training.common.save_adapter`) and cannot carry a classification head."""
    value = str(peft_value).lower()
    return value.startswith("pissa") or value in ("olora", "corda")


def seed_problem(seed: Any, where: str) -> str | None:
    """Why `seed` cannot seed a run (numpy, torch and random must all accept it), or None."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        return f"{where}: seed {seed!r} is out of range; give whole numbers from 0 to {MAX_SEED}"
    return None


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
        "labels), generation (free text) or structured (a JSON object per example; see the structured section).",
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
    """The adapter: `method` names a PEFT method (`sft.config.adapters`, LoRA by default) and the other keys
    are arguments of its PEFT config class. The usual ones are typed here; any other field of that class is
    accepted and checked against peft by `sft.experiment.checks` (it costs a peft import, so it is not done
    here)."""

    model_config = ConfigDict(extra="allow", strict=True)

    method: str = Field(
        DEFAULT_METHOD,
        description="The PEFT adapter method: lora, rslora, dora, adalora, loha, lokr, vera, ia3, oft, boft, "
        "prompt_tuning or prefix_tuning (see docs/adapters.md); the other lora keys are that method's arguments.",
    )

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
        "(gaussian, pissa_residual, pissa_niter_<n>, olora, orthogonal, mica, loftq, and eva or corda, which run "
        "over the training inputs first: docs/adapters.md).",
    )
    init_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the sft initializer, e.g. {'n_neighbors': 10} for umap, {'niter': 4} "
        "for a randomized SVD in pca or pissa.",
    )
    use_rslora: bool = Field(False, description="Rank-stabilized LoRA: scale by lora_alpha / sqrt(r).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    modules_to_save: list[str] | None = Field(None, description="Modules trained in full and saved with the adapter.")
    eva_config: dict[str, Any] | None = Field(
        None,
        description="With init_lora_weights 'eva': the arguments of peft.EvaConfig (rho, tau, use_label_mask, "
        "label_mask_value, whiten, adjust_scaling_factors); PEFT's defaults when left out.",
    )
    corda_config: dict[str, Any] | None = Field(
        None,
        description="With init_lora_weights 'corda': the arguments of peft.CordaConfig (corda_method 'ipm' or "
        "'kpm', use_float16_for_covariance, verbose); PEFT's defaults when left out. sft caches the decomposition "
        "itself, so cache_file and covariance_file are refused.",
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in ADAPTERS:
            raise ValueError(
                f"unknown adapter method {value!r}{did_you_mean(value, ADAPTERS)}; choose from {', '.join(ADAPTERS)}"
            )
        return value

    @model_validator(mode="after")
    def _fields_of_the_method(self) -> LoraSection:
        # Only non-default values count, as in the config hash: a spelled-out default means what leaving it
        # out means (a resolved config.json read back lists every field).
        traits = adapter_traits(self.method)
        initializer = self.init_lora_weights
        if not traits.low_rank_pair and initializer is not True:
            raise ValueError(
                f"init_lora_weights {initializer!r} initializes LoRA's low-rank A/B pair, which {traits.label} "
                f"(method {self.method!r}) does not have; use method lora, rslora or dora, or remove init_lora_weights"
            )
        foreign = sorted(
            name
            for name, info in LoraSection.model_fields.items()
            if name not in ("method", "task_type", "init_args", "init_lora_weights")
            and name not in traits.typed
            and getattr(self, name) != info.get_default(call_default_factory=True)
        )
        if foreign:
            described = "; ".join(f"{name} belongs to {', '.join(owners(name))}" for name in foreign)
            raise ValueError(
                f"method {self.method!r} does not take {', '.join(foreign)} ({described}); remove "
                f"{'them' if len(foreign) > 1 else 'it'} or choose one of those methods"
            )
        return self

    @field_validator("init_lora_weights")
    @classmethod
    def _runnable_initialization(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and value in UNRUN_INITIALIZATIONS:
            raise ValueError(
                f"PEFT's {value!r} initialization needs a pass over training data "
                f"({UNRUN_INITIALIZATIONS[value]}) that sft does not run; choose another initialization "
                f"(eva and corda run over the training inputs)"
            )
        return value

    @model_validator(mode="after")
    def _initialization_arguments(self) -> LoraSection:
        if self.init_args and not self.custom_initializer:
            raise ValueError("init_args is only for sft initializers (pca, pissa, umap, ...), not PEFT's")
        if self.init_lora_weights == "loftq" and not (self.model_extra or {}).get("loftq_config"):
            raise ValueError('loftq needs lora.loftq_config, e.g. {"loftq_bits": 4, "loftq_iter": 1}')
        for name, key in DATA_DRIVEN_INITIALIZATIONS.items():
            if getattr(self, key) is not None and self.init_lora_weights != name:
                raise ValueError(
                    f"{key} configures init_lora_weights {name!r} (got {self.init_lora_weights!r}); remove {key} or "
                    f"set init_lora_weights to {name!r}"
                )
        return self

    @property
    def data_driven(self) -> str | None:
        """The PEFT initialization that runs over the training inputs before training (eva, corda), or None."""
        value = self.init_lora_weights
        return value if isinstance(value, str) and value in DATA_DRIVEN_INITIALIZATIONS else None

    @property
    def rewrites_base(self) -> bool:
        """Whether the initialization rewrites the base weights (PEFT's PiSSA, OLoRA, CorDA; not sft's pissa)."""
        value = self.init_lora_weights
        return (
            isinstance(value, str)
            and peft_initialization(value)
            and rewrites_base(PEFT_INITIALIZATIONS.get(value, value))
        )

    @property
    def custom_initializer(self) -> str | None:
        """The sft initializer (`sft.model.initialization`) named by init_lora_weights, or None for PEFT's own
        initializations: every name that is not PEFT's names one (`sft.experiment.checks` refuses a name
        that is neither)."""
        value = self.init_lora_weights
        return value if isinstance(value, str) and not peft_initialization(value) else None

    def peft_kwargs(self) -> dict[str, Any]:
        """The arguments of the method's PEFT config class: the typed fields the method takes (with sft's
        defaults: r is 8 for every method), the method's own default targets when target_modules is left
        out, the defaults PEFT leaves unset, and the extra keys. An sft initializer starts
        from PEFT's default (B = 0) and is applied to the PEFT model afterwards (sft.model.initialization.apply)."""
        traits = adapter_traits(self.method)
        if not traits.low_rank_pair:
            kwargs = self.model_dump(include={"task_type", *traits.typed})
            default = LoraSection.model_fields["target_modules"].default
            if "target_modules" in traits.typed and self.target_modules == default:  # as if left out
                kwargs["target_modules"] = traits.default_targets
            return traits.defaults | kwargs | dict(self.model_extra or {}) | traits.fixed
        kwargs = self.model_dump(exclude={"init_args", "method"}) | traits.fixed
        value = self.init_lora_weights
        if self.custom_initializer:
            kwargs["init_lora_weights"] = True
        elif isinstance(value, str):
            kwargs["init_lora_weights"] = PEFT_INITIALIZATIONS.get(value, value)
        if self.data_driven is not None:  # PEFT's defaults, without the warning it gives when the settings are left out
            key = DATA_DRIVEN_INITIALIZATIONS[self.data_driven]
            kwargs[key] = dict(kwargs[key] or {})
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
    batching: Literal["fastest", "padded"] = Field(
        "fastest",
        description="How training batches are built (sft.training.batching). fastest: no padding: a causal LM "
        "trains on padding-free rows (examples concatenated, attention per example: flash-attention's varlen "
        "kernels on a GPU where installed, else SDPA per example; the adapter equals padded training's within "
        "float noise), a classification head on length-grouped batches; no gradient checkpointing on CPU. padded: "
        "the libraries' defaults (padded batches in random order), to reproduce an older run exactly.",
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
    cluster_column: str | None = Field(
        None,
        description="A test-split column whose equal values mark examples that are not independent (one source "
        "document, one author): predictions.jsonl keeps it, and the report's intervals and tests resample and swap "
        "whole clusters. Default: every example is independent.",
    )


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


# -- search: hyperparameters chosen on the validation split (sft.search) -------------------------------------------


class SearchParameter(Section):
    """One dimension of a search space (`search.space.<dotted key>`), an Optuna distribution."""

    type: Literal["float", "int", "categorical"] = Field(
        description="float (a real range), int (a whole-number range) or categorical (one of `choices`)."
    )
    low: int | float | None = Field(None, description="float/int: the smallest value.")
    high: int | float | None = Field(None, description="float/int: the largest value (included).")
    log: bool = Field(False, description="float/int: sample on a log scale (low must be > 0), e.g. learning rates.")
    step: int | float | None = Field(
        None, description="float/int: only values low, low + step, ...; the grid sampler needs it for a float range."
    )
    choices: list[Any] | None = Field(
        None, description="categorical: the values (numbers, strings, booleans or null), at least one."
    )

    @model_validator(mode="after")
    def _shape(self) -> SearchParameter:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs choices, e.g. [4, 8, 16]")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("a categorical parameter takes only choices; remove low, high, log and step")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} range takes low and high, not choices (or use type categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} range needs low and high")
        if self.type == "int" and not all(
            isinstance(value, int) for value in (self.low, self.high, self.step) if value is not None
        ):
            raise ValueError("an int range needs whole-number low, high and step; use type float for a real range")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no step")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive (got {self.step})")
        return self

    def points(self) -> list[Any] | None:
        """Every value the parameter can take, when finitely many (choices, an int range, a stepped range)."""
        if self.type == "categorical":
            return list(self.choices or [])
        assert self.low is not None and self.high is not None
        if self.type == "float" and self.step is None:
            return None
        step = self.step or 1
        count = round((self.high - self.low) / step + 1e-9) + 1
        values = [self.low + index * step for index in range(count)]
        return [int(value) for value in values] if self.type == "int" else [round(value, 12) for value in values]


class SearchConfig(Section):
    """A hyperparameter search (sft.search, docs/search.md): trials train on the training split and are compared
    on the validation split only; the best trial's values are then trained and tested for every seed."""

    space: dict[str, SearchParameter] = Field(
        min_length=1,
        description="Dotted config key -> its distribution, e.g. {'training.trainer_args.learning_rate': "
        "{'type': 'float', 'low': 1e-5, 'high': 1e-3, 'log': true}, 'lora.r': {'type': 'categorical', "
        "'choices': [4, 8, 16]}}. Keys that change the test split or the labels are refused.",
    )
    trials: int = Field(ge=1, description="Trials that must finish (completed, pruned, or failed on their own).")
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="Optuna's TPESampler, RandomSampler or GridSampler (every point of a finite space)."
    )
    pruner: Literal["asha", "median", "none"] = Field(
        "asha",
        description="Stops unpromising trials at their validation evaluations: asha (Optuna's "
        "SuccessiveHalvingPruner), median (MedianPruner) or none.",
    )
    seed: int = Field(0, ge=0, description="Seeds the sampler, so a search draws the same trials again.")
    startup_trials: int | None = Field(
        None,
        ge=0,
        description="Trials sampled at random before TPE models the results (default: 10, at most a third of "
        "`trials`); median pruning prunes nothing before this many trials finished (default: 5, at most a third).",
    )
    min_resource: int | None = Field(
        None,
        ge=1,
        description="asha: training steps every trial runs before it can be pruned; default: Optuna's 'auto'.",
    )
    reduction_factor: int = Field(3, ge=2, description="asha: keep about 1/reduction_factor of trials per rung.")
    storage: Literal["sqlite", "journal"] = Field(
        "sqlite",
        description="The study database in RESULTS/_search/<experiment>/: sqlite (Optuna's RDB storage) or "
        "journal (Optuna's JournalStorage on a file, for cluster file systems where SQLite's locks fail).",
    )


# -- structured outputs (task_type structured; regex and choice constraints of generation) ---------------


class TargetField(Section):
    """`structured.target_fields.<field>`: one field of the target object, read from a column of the data."""

    column: str = Field(description="The column the field's value is read from.")
    map: dict[str, Any] | None = Field(
        None,
        description="Replace each value (each element of a list) by map[value]; a value outside the map is an error.",
    )
    mixed: Any = Field(
        None,
        description="With map over a list column: the field is one value, the elements' common mapped value, or "
        "this value when they differ (e.g. GoEmotions' emotions -> one sentiment, 'ambiguous' when mixed).",
    )


class StructuredConfig(Section):
    """Structured outputs: the JSON Schema of a structured task's answers, how they are decoded and
    compared field by field, and the regex / choice constraints a generation task may decode under."""

    json_schema: dict[str, Any] | None = Field(
        None,
        description="Structured: the JSON Schema every answer fits (an object). Null: inferred from the training "
        "targets (types, required keys, enums of fields with few values) and recorded in results.json.",
    )
    target_fields: dict[str, TargetField] | None = Field(
        None,
        description="Structured: build the target object from columns (field -> column and value map) instead of "
        "reading it from prompting.output_column.",
    )
    constrained: bool = Field(
        True,
        description="Decode under the grammar of the schema (structured), or of regex / choices (generation), so "
        "every answer parses and fits; false: free decoding, scored the same way (valid share included).",
    )
    regex: str | None = Field(None, description="Generation: every answer matches this regular expression.")
    choices: list[str] | None = Field(None, description="Generation: every answer is one of these strings.")
    number_tolerance: float = Field(
        0.0, ge=0.0, description="Structured metrics: a number field is right within this absolute difference."
    )
    enum_limit: int = Field(
        32,
        ge=1,
        description="Inferred schema: a string field (or list of strings) with at most this many distinct values in "
        "the training targets, each seen at least twice, is a category (enum); others are free text.",
    )

    @model_validator(mode="after")
    def _one_constraint(self) -> StructuredConfig:
        if self.regex is not None and self.choices is not None:
            raise ValueError("structured.regex and structured.choices both constrain the answer; keep one")
        if self.choices is not None and not self.choices:
            raise ValueError("structured.choices is empty; give at least one answer")
        return self
