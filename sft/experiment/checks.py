"""Whole-grid checks of parsed configs that need more than the config itself, before anything runs.

- `config_problems`: names kept in other packages' registries (an sft initializer, a calibration) and
  the rules that depend on what the experiment's task and predictor accept (a head on a task without
  one, calibration of a head, in-context examples a head never reads, ...). The task and the
  predictor's `Traits` are asked, never their names compared. These run as the grid loads
  (`load_grid`, `load_one`), so they are reported with the schema's own errors.
- `library_problems`: argument names passed through to peft / trl / transformers, metric names,
  quantization backends, `training.metric`.
- `data_problems_of`: each dataset loaded once, every experiment's splits, columns and labels on it.

Every problem of every experiment is collected and raised as one ConfigError, so a researcher fixes a
grid in one pass instead of discovering errors one run at a time. The models are checked after these,
by each predictor's preflight (`sft.experiment.preflight`).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sft.config import PEFT_INITIALIZATIONS, ConfigError, ExperimentConfig, LoraSection, parse_config
from sft.config.adapters import ADAPTERS, adapter_traits
from sft.config.grid import load_experiments, load_single
from sft.config.parsing import shown
from sft.config.schema import DATA_DRIVEN_INITIALIZATIONS, StructuredConfig
from sft.data.splits import data_problems, load_splits
from sft.data.targets import with_target_fields
from sft.evaluation.metrics import METRICS
from sft.model.initialization.registry import INITIALIZERS
from sft.model.quantization import quantization_problems
from sft.predictors import Traits, predictor_name, traits_of
from sft.registry import did_you_mean, resolve
from sft.scoring.registry import CALIBRATIONS
from sft.search.space import space_problems
from sft.tasks import task_for
from sft.tasks.base import selection_problems
from sft.tasks.structured import field_kinds, schema_problems

# -- one config: registry names, and what its task and predictor accept ----------------------------------


def name_problems(config: ExperimentConfig) -> list[str]:
    """Names a config gives that another package's registry must know: the sft initializer and the
    calibration (known without importing either implementation)."""
    problems = []
    custom = config.lora.custom_initializer if config.lora is not None else None
    if custom is not None and custom not in INITIALIZERS:
        names = [*INITIALIZERS, *PEFT_INITIALIZATIONS]
        choices = ", ".join([*names, "pissa_niter_<n>", "true", "false"])
        problems.append(
            f"lora.init_lora_weights: unknown initialization {custom!r}{did_you_mean(custom, names)}; "
            f"choose from {choices} (got {shown(custom)})"
        )
    calibration = config.inference.calibration_args.calibration_fn
    if calibration is not None:
        problems += [
            f"inference.calibration_args.calibration_fn: {message} (got {shown(calibration)})"
            for message in CALIBRATIONS.unknown([calibration])
        ]
    return problems


def mode_problems(config: ExperimentConfig) -> list[str]:
    """Settings the experiment's task or predictor would not use (or cannot): refused rather than ignored."""
    task = task_for(config)
    chosen, generative = traits_of(predictor_name(config, task)), traits_of(task.generative_predictor)
    inference, training, lora = config.inference, config.training, config.lora
    problems = []
    if inference.calibration_args.calibration_fn and not generative.calibrates:
        problems.append(
            "inference.calibration_args.calibration_fn applies to single-label classification only; remove it"
        )
    elif inference.calibration_args.calibration_fn and not chosen.calibrates:
        problems.append(
            "inference.calibration_args.calibration_fn calibrates label scoring, not a classification head; "
            "remove it or model.head"
        )
    if inference.normalization != "sum" and not chosen.normalizes:
        problems.append(
            "inference.normalization applies to label scoring of single-label classification; "
            "remove it (a head and multilabel scoring use their own probabilities)"
        )
    if chosen.head and task.head is None:
        problems.append("model.head: a classification head cannot generate; use classification or multilabel")
    unread = [
        key
        for key, value in (
            ("inference.icl_examples", inference.icl_examples),
            ("training.icl_examples", training.icl_examples if training else 0),
        )
        if value
    ]
    if unread and not chosen.in_context:
        problems.append(
            f"{', '.join(unread)}: a classification head reads the input alone, without in-context "
            "examples; remove them or model.head"
        )
    if training is not None and training.class_weights is not None and not chosen.class_weights:
        problems.append("training.class_weights applies to model.head: 'classification' only; remove it")
    if lora is not None and lora.rewrites_base and not chosen.rewritten_base:
        problems.append(
            f"lora.init_lora_weights: {lora.init_lora_weights!r} rewrites the base weights, which head mode "
            "cannot save reloadably; use sft's 'pissa' (base untouched), 'pca', 'umap' or 'gaussian'"
        )
    if lora is not None:
        problems += method_problems(config, chosen)
    if lora is not None and lora.task_type == "SEQ_CLS" and chosen.lora_task_type != "SEQ_CLS":
        problems.append('lora.task_type: SEQ_CLS needs model.head: "classification" (sft sets it in head mode)')
    return problems


def structured_problems(config: ExperimentConfig) -> list[str]:
    """The structured section's settings on a task or predictor that would not use them, and a configured
    schema that is not JSON Schema or has a field the metrics cannot compare."""
    task = task_for(config)
    settings = config.structured
    chosen = traits_of(predictor_name(config, task))
    problems = []
    if task.structured_output:
        for key in ("regex", "choices"):
            if getattr(settings, key) is not None:
                problems.append(f"structured.{key}: a structured task decodes under its JSON Schema; remove it")
        if settings.json_schema is not None:
            problems += schema_problems(settings.json_schema) or field_kinds(settings.json_schema)[1]
        return problems
    schema_keys = ("json_schema", "target_fields", "number_tolerance", "enum_limit")
    default = StructuredConfig()
    set_keys = [key for key in schema_keys if getattr(settings, key) != getattr(default, key)]
    if set_keys:
        keys = ", ".join(f"structured.{key}" for key in set_keys)
        problems.append(f"{keys}: only dataset.task_type structured has a JSON Schema; remove them or change the task")
    constrained = [key for key in ("regex", "choices") if getattr(settings, key) is not None]
    if constrained and not chosen.generates:
        problems.append(
            f"structured.{constrained[0]}: constrains generated answers; only task_type generation (or structured) "
            "generates, so remove it"
        )
    return problems


def method_problems(config: ExperimentConfig, chosen: Traits) -> list[str]:
    """What the adapter method cannot carry: the predictor's classification head or its trainer (the
    predictor's `chosen` traits), a 4/8-bit base (the method's traits say)."""
    assert config.lora is not None
    traits = adapter_traits(config.lora.method)
    fits = [name for name in ADAPTERS if adapter_traits(name).quantized]
    problems = []
    if chosen.head and not traits.head:
        heads = [name for name in ADAPTERS if adapter_traits(name).head]
        problems.append(
            f"lora.method: {traits.label} cannot carry a classification head (PEFT needs a model that returns a KV "
            f"cache, which a sequence-classification model does not); choose one of {', '.join(heads)} or remove "
            "model.head"
        )
    if config.trains and chosen.trainer_arguments.startswith("trl.") and not traits.sft_trainer:
        problems.append(
            f"lora.method: {traits.label} cannot be trained by TRL's SFTTrainer in generative mode (its fused "
            "LM-head forward runs without the KV cache that holds the learned prefix); use prompt_tuning, or "
            'model.head: "classification"'
        )
    if config.model.quantization is not None and config.trains and not traits.quantized:
        problems.append(
            f"lora.method: PEFT has no {traits.label} layers for quantized bases (model.quantization); choose one "
            f"of {', '.join(fits)} or load the model unquantized"
        )
    if config.model.quantization is not None and config.trains and config.lora.init_lora_weights == "corda":
        problems.append(
            "lora.init_lora_weights: CorDA rewrites the base weights in floating point, which PEFT refuses on a "
            "quantized base (model.quantization); load the model unquantized, or choose eva, pca or pissa"
        )
    return problems


def config_problems(config: ExperimentConfig) -> list[str]:
    """Everything wrong with one parsed config that needs other packages' knowledge but no library, data or
    model: each message starts with the key it is about."""
    return name_problems(config) + mode_problems(config) + space_problems(config) + structured_problems(config)


def checked_config(raw: Any, source: str = "config") -> ExperimentConfig:
    """`parse_config` and `config_problems`: one raw config, fully checked short of libraries, data and model."""
    config = parse_config(raw, source)
    problems = config_problems(config)
    if problems:
        raise ConfigError([f"{source}: {problem}" for problem in problems])
    return config


def load_grid(
    path: str | Path, ext_vars: dict[str, str] | None = None, command: str | None = None
) -> dict[str, ExperimentConfig]:
    """Every experiment of a grid file, parsed and checked by `config_problems`; one ConfigError with every
    problem otherwise."""
    return load_experiments(path, ext_vars, command, config_problems)


def load_one(path: str | Path, command: str, ext_vars: dict[str, str] | None = None) -> tuple[str, ExperimentConfig]:
    """The one experiment of a file given to a single-config command, checked as `load_grid` checks."""
    return load_single(path, command, ext_vars, config_problems)


# -- the libraries' argument names -------------------------------------------------------------------------

# Set by sft itself, so a config must not set them.
RESERVED_LORA_KEYS = {
    "peft_type",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
}


@cache
def _method_fields(method: str) -> frozenset[str]:
    """The arguments of the method's PEFT config class that a config may set."""
    cls = ADAPTERS.get(method)
    return frozenset(field.name for field in dataclasses.fields(cls) if field.init) - RESERVED_LORA_KEYS


def adapter_problems(lora: LoraSection) -> list[str]:
    """The `lora` section against the PEFT config class of its method: unknown keys (with the method that
    owns one, or the closest name), values of the wrong type, and values the class refuses when built
    (no model needed), each with its key path."""
    method, traits = lora.method, adapter_traits(lora.method)
    known = _method_fields(method)
    problems = []
    for key in lora.model_extra or {}:
        if key in known:
            continue
        elsewhere = [name for name in ADAPTERS if name != method and key in _method_fields(name)]
        if elsewhere:
            problems.append(
                f"lora.{key}: an argument of {', '.join(elsewhere)}, not of {traits.label} (method {method!r}); "
                "remove it or change lora.method"
            )
        else:
            problems += _unknown_keys([key], known, "lora", traits.peft_config.replace(":", "."))
    if problems:
        return problems
    cls = ADAPTERS.get(method)
    kwargs = lora.peft_kwargs()
    hints = typing.get_type_hints(cls)
    for key in DATA_DRIVEN_INITIALIZATIONS.values():
        settings = getattr(lora, key)
        if settings is not None:
            problems += subconfig_problems(f"lora.{key}", settings, _subconfig_class(hints[key]))
    for key, value in (lora.model_extra or {}).items():
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError:
            wanted = getattr(hints[key], "__name__", None) or str(hints[key]).replace("typing.", "")
            problems.append(f"lora.{key}: {value!r} is not a valid {wanted} (an argument of {traits.label})")
        except Exception:  # a field type pydantic cannot check; construction decides
            continue
    if problems:
        return problems
    if traits.total_steps:
        kwargs.setdefault("total_step", 1)  # sft fills the real one from the trainer's arguments
    try:
        cls(**kwargs)
    except Exception as error:  # PEFT raises ValueError, TypeError... from __post_init__
        text = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        return [f"lora: peft.{cls.__name__} refuses these settings (method {method!r}): {text}"]
    return []


# CorDA's own cache files are pickles (torch.save); sft keeps the decomposition in its safetensors cache instead.
SFT_CACHED = {"cache_file", "covariance_file"}


def _subconfig_class(hint: Any) -> Any:
    """The dataclass in a sub-config's type hint (`Optional[EvaConfig]` -> EvaConfig)."""
    return next(arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg))


def subconfig_problems(where: str, settings: dict[str, Any], cls: Any) -> list[str]:
    """A PEFT sub-config (EvaConfig, CordaConfig) given as a dict at key path `where`: unknown keys (with the
    closest name), values of the wrong type, and values the class refuses when built."""
    known = frozenset(field.name for field in dataclasses.fields(cls) if field.init)
    problems = _unknown_keys(settings, known, where, f"peft.{cls.__name__}")
    problems += [
        f"{where}.{key}: sft caches the decomposition itself (safetensors, $SFT_INIT_CACHE) instead of PEFT's "
        "pickled files; remove it"
        for key in settings
        if key in SFT_CACHED and key in known
    ]
    if problems:
        return problems
    hints = typing.get_type_hints(cls)
    for key, value in settings.items():
        try:
            TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError:
            choices = typing.get_args(hints[key]) if typing.get_origin(hints[key]) is typing.Literal else ()
            wanted = getattr(hints[key], "__name__", None) or str(hints[key]).replace("typing.", "")
            fix = f"one of {', '.join(repr(choice) for choice in choices)}" if choices else f"a valid {wanted}"
            problems.append(f"{where}.{key}: {value!r} is not {fix}")
        except Exception:  # a field type pydantic cannot check; construction decides
            continue
    if problems:
        return problems
    try:
        cls(**settings)
    except Exception as error:  # __post_init__ raises ValueError
        text = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        return [f"{where}: peft.{cls.__name__} refuses these settings: {text}"]
    return []


@cache
def _init_fields(dotted: str) -> frozenset[str]:
    """The constructor arguments of a dataclass named "module.Class" (a trainer's arguments class)."""
    module, _, name = dotted.rpartition(".")
    cls = resolve(f"{module}:{name}")
    return frozenset(field.name for field in dataclasses.fields(cls) if field.init)


@cache
def _integer_fields(dotted: str) -> frozenset[str]:
    """The arguments of a dataclass named "module.Class" that take whole numbers only."""
    module, _, name = dotted.rpartition(".")
    cls = resolve(f"{module}:{name}")
    return frozenset(field.name for field in dataclasses.fields(cls) if field.init and field.type in (int, "int"))


def _integer_argument_problems(config: ExperimentConfig, trainer_arguments: str) -> list[str]:
    """A searched trainer argument that takes whole numbers given a float range."""
    assert config.search is not None
    integers = _integer_fields(trainer_arguments)
    return [
        f"search.space.{key}: {trainer_arguments} takes a whole number; use type int (or categorical)"
        for key, parameter in config.search.space.items()
        if key.startswith("training.trainer_args.") and key.rpartition(".")[2] in integers
        if parameter.type == "float" or any(isinstance(choice, float) for choice in parameter.choices or [])
    ]


@cache
def _generation_fields() -> frozenset[str]:
    from transformers import GenerationConfig

    return frozenset(GenerationConfig().to_dict()) - {"transformers_version", "_from_model_config"}


# Names people write from memory that string similarity cannot map to the real argument.
ALIASES = {"rank": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "epochs": "num_train_epochs"}


def _unknown_keys(keys: Iterable[str], known: frozenset[str], where: str, library: str) -> list[str]:
    def hint(key: str) -> str:
        return f" (did you mean {ALIASES[key]!r}?)" if ALIASES.get(key) in known else did_you_mean(key, known)

    return [f"{where}.{key}: not an argument of {library}{hint(key)}" for key in keys if key not in known]


def library_problems(configs: dict[str, ExperimentConfig]) -> list[str]:
    """Argument names that peft, trl or transformers would reject (or silently ignore), metric names, the
    quantization backend and `training.metric`."""
    problems = []
    for name, config in configs.items():
        task = task_for(config)
        traits = traits_of(predictor_name(config, task))
        found = []
        if config.lora is not None:
            found += adapter_problems(config.lora)
        if config.training is not None and config.training.trainer_args:
            fields = _init_fields(traits.trainer_arguments)
            found += _unknown_keys(
                config.training.trainer_args, fields, "training.trainer_args", traits.trainer_arguments
            )
        if config.search is not None:  # the trainer arguments a search varies
            prefix = "training.trainer_args."
            searched = [key.removeprefix(prefix) for key in config.search.space if key.startswith(prefix)]
            found += _unknown_keys(
                searched, _init_fields(traits.trainer_arguments), "search.space.training.trainer_args",
                traits.trainer_arguments,
            )  # fmt: skip
            found += _integer_argument_problems(config, traits.trainer_arguments)
            lora_keys = [key.removeprefix("lora.") for key in config.search.space if key.startswith("lora.")]
            extra = [key for key in lora_keys if key not in LoraSection.model_fields]
            method = config.lora.method if config.lora is not None else "lora"
            found += _unknown_keys(
                extra, _method_fields(method), "search.space.lora", adapter_traits(method).peft_config.replace(":", ".")
            )
        if traits.generates:
            found += _unknown_keys(
                config.inference.generation_args, _generation_fields(), "inference.generation_args", "model.generate"
            )
        found += quantization_problems(config.model.quantization)
        found += selection_problems(config, task)
        if config.evaluation.metrics:
            found += [f"evaluation.metrics: {message}" for message in METRICS.unknown(config.evaluation.metrics)]
        problems += [f"[{name}] {problem}" for problem in found]
    return problems


# -- the data --------------------------------------------------------------------------------------------


def data_problems_of(configs: dict[str, ExperimentConfig]) -> list[str]:
    """Load each distinct dataset once and check every experiment's columns, splits and labels on it."""
    loaded: dict[str, object] = {}
    problems = []
    for name, config in configs.items():
        key = json.dumps([config.dataset.path, config.dataset.args], sort_keys=True, default=str)
        if key not in loaded:
            try:
                loaded[key] = load_splits(config.dataset)
            except ConfigError as error:
                loaded[key] = error
        splits = loaded[key]
        try:
            found = (
                splits.messages
                if isinstance(splits, ConfigError)
                else data_problems(config, with_target_fields(config, splits))
            )
        except ConfigError as error:
            found = error.messages
        problems += [f"[{name}] {problem}" for problem in found]
    return problems


def grid_problems(configs: dict[str, ExperimentConfig], check_data: bool = True) -> list[str]:
    """Every problem of parsed configs that needs no model: library argument names, and the data."""
    problems = library_problems(configs)
    if check_data:
        problems += data_problems_of(configs)
    return problems


def validate_grid(
    path: str | Path, ext_vars: dict[str, str] | None = None, command: str = "run-experiment", check_data: bool = True
) -> dict[str, ExperimentConfig]:
    """Expand and validate a grid file (all but the models: see sft.experiment.preflight); raise one
    ConfigError with every problem found."""
    configs = load_grid(path, ext_vars, command)
    problems = grid_problems(configs, check_data)
    if problems:
        raise ConfigError(problems)
    return configs
