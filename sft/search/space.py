"""A search space checked against the config schema, and the configs it produces.

Every key of `search.space` is a dotted config key (`lora.r`, `training.trainer_args.learning_rate`). It is
checked before anything runs: the key must exist in the schema (or sit in one of the free-form argument
dicts, whose names the library checks of `sft.experiment.checks` verify), must not change what trials
are compared on or what the test measures (the data, the splits, the labels, the validation settings),
and each end of a range and each choice must be a value the config accepts (an int field refuses a
float range; a rate refuses a negative value). A trial's config is the experiment's with the sampled
values set: parsed again, so it is exactly what a hand-written config with those values would be.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ValidationError

from sft.config import ExperimentConfig
from sft.config.parsing import describe_errors, section_type, shown
from sft.config.schema import SearchConfig, SearchParameter
from sft.registry import did_you_mean

# Keys a search may not vary, by prefix, and why: a search compares trials on the validation split and
# then tests the chosen configuration, so neither what is compared nor what is tested may move.
REFUSED: dict[str, str] = {
    "dataset.path": "it changes the data, the test split and the labels",
    "dataset.args": "it changes the data, the test split and the labels",
    "dataset.task_type": "it changes the task and the labels",
    "dataset.test_split": "it changes the test split",
    "dataset.max_n_test": "it changes the test split",
    "dataset.labels": "it changes the labels",
    "dataset.train_split": "it changes the training data and the labels",
    "dataset.validation_split": "it changes the split trials are compared on",
    "prompting.output_column": "it changes the labels",
    "training.validation_from_train": "it changes the split trials are compared on",
    "training.eval_examples": "it changes the examples trials are compared on",
    "training.metric": "it changes the value trials are compared on",
    "training.eval_every": "it changes when trials report to the pruner",
    "training.eval_unit": "it changes when trials report to the pruner",
    "training.eval_loss": "it changes what trials are compared on",
    "evaluation": "it changes how the test is scored, not what a trial learns",
    "resources": "it changes where a trial runs, not what it learns",
    "search": "a search cannot search itself",
    "model.adapter": "it is what predict loads, not a training setting",
    "model.device": "it places the model, it changes nothing learned",
}

# Trainer arguments (free-form `training.trainer_args`) whose range the schema cannot know:
# name -> (lowest accepted, whether the lowest itself is accepted).
TRAINER_ARGUMENT_RANGES: dict[str, tuple[float, bool]] = {
    "learning_rate": (0.0, False),
    "num_train_epochs": (0.0, False),
    "max_steps": (1.0, True),
    "per_device_train_batch_size": (1.0, True),
    "gradient_accumulation_steps": (1.0, True),
    "weight_decay": (0.0, True),
    "warmup_ratio": (0.0, True),
    "warmup_steps": (0.0, True),
    "max_grad_norm": (0.0, False),
    "adam_epsilon": (0.0, False),
}

SCALARS = (str, int, float, bool, type(None))


def refused_reason(key: str) -> str | None:
    """Why a search may not vary `key`, or None."""
    for prefix, reason in REFUSED.items():
        if key == prefix or key.startswith(prefix + "."):
            return reason
    return None


def _key_problem(key: str) -> str | None:
    """Why `key` names no config setting (walking the schema's sections), or None. Keys inside a section's
    free-form arguments (`training.trainer_args.*`, extra `lora.*`, `model.model_args.*`) are accepted here;
    the library checks verify their names."""
    model: type[BaseModel] = ExperimentConfig
    parts = key.split(".")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            if model.model_config.get("extra") == "allow" and index == len(parts) - 1:
                return None  # a library argument of a section that passes extra keys through
            where = ".".join(parts[:index]) or "the config"
            return f"no such key{did_you_mean(part, list(model.model_fields))} in {where}; known keys there: " + (
                ", ".join(model.model_fields)
            )
        section = section_type(field.annotation)
        last = index == len(parts) - 1
        if isinstance(section, type) and issubclass(section, BaseModel):
            if last:
                return "is a whole section; search one of its keys"
            model = section
            continue
        if last:
            return None
        if "dict" in str(field.annotation) and index == len(parts) - 2:
            return None  # a key of a free-form dict (trainer_args, generation_args, init_args, ...)
        return f"{'.'.join(parts[: index + 1])} holds a single value, not keys"
    return None


def with_values(config: ExperimentConfig, values: dict[str, Any]) -> ExperimentConfig:
    """`config` with each dotted key of `values` set, parsed again (ValidationError when refused)."""
    raw = config.model_dump(mode="json", exclude_defaults=True)
    for key, value in values.items():
        target = raw
        *parents, last = key.split(".")
        for part in parents:
            inner = target.get(part)
            target[part] = inner = dict(inner) if isinstance(inner, dict) else {}
            target = inner
        target[last] = value
    return ExperimentConfig.model_validate(raw)


def probe_values(parameter: SearchParameter) -> list[Any]:
    """The values a parameter is checked with: the ends of a range (as floats for a float range, so an int
    field refuses it) or every choice."""
    if parameter.type == "categorical":
        return list(parameter.choices or [])
    values = [value for value in (parameter.low, parameter.high) if value is not None]
    return [float(value) for value in values] if parameter.type == "float" else list(values)


def _range_problem(name: str, parameter: SearchParameter) -> str | None:
    lowest = TRAINER_ARGUMENT_RANGES.get(name)
    if lowest is None:
        return None
    bound, inclusive = lowest
    bad = [
        value
        for value in probe_values(parameter)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        if value < bound or (value == bound and not inclusive)
    ]
    if not bad:
        return None
    relation = ">=" if inclusive else ">"
    return f"{name} must be {relation} {bound:g}; {shown(bad[0])} is out of range"


def space_problems(config: ExperimentConfig) -> list[str]:
    """Everything wrong with the experiment's search (none without one), each message naming its key: the
    search needs model selection on a validation split; each key must exist, be allowed and accept every
    value of its distribution; a grid search asks no more trials than the space has points."""
    search = config.search
    if search is None:
        return []
    problems = []
    training = config.training
    if not config.trains or training is None:
        problems.append("search: a search tunes a training; set dataset.shots > 0 and a training section")
    elif not training.evaluates():
        problems.append(
            "search: trials are compared on the validation split during training; set training.eval_every (e.g. 1, "
            "eval_unit 'epochs') with dataset.validation_split or training.validation_from_train"
        )
    for key, parameter in search.space.items():
        where = f"search.space.{key}"
        reason = refused_reason(key)
        if reason is not None:
            problems.append(f"{where}: a search may not vary this key: {reason}; fix it in the experiment instead")
            continue
        problem = _key_problem(key)
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        if parameter.type == "categorical" and not all(isinstance(value, SCALARS) for value in parameter.choices or []):
            problems.append(f"{where}: choices must be numbers, strings, booleans or null (Optuna stores those)")
            continue
        if key.startswith("training.trainer_args."):
            problem = _range_problem(key.rpartition(".")[2], parameter)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
        problems += _value_problems(config, key, parameter, where)
    if search.sampler == "grid":
        problems += _grid_problems(search)
    return problems


def _value_problems(config: ExperimentConfig, key: str, parameter: SearchParameter, where: str) -> list[str]:
    """What the schema says about each value of the parameter set into the experiment's config."""
    for value in probe_values(parameter):
        try:
            with_values(config, {key: value})
        except ValidationError as error:
            reasons = "; ".join(describe_errors(error))
            hint = " (use type int for an integer key)" if parameter.type == "float" and "integer" in reasons else ""
            return [f"{where}: the config refuses {shown(value)}{hint}: {reasons}"]
    return []


def _grid_problems(search: SearchConfig) -> list[str]:
    problems = []
    sizes = []
    for key, parameter in search.space.items():
        points = parameter.points()
        if points is None:
            problems.append(f"search.space.{key}: the grid sampler needs finitely many values; give a step or choices")
        else:
            sizes.append(len(points))
    if not problems and search.trials > math.prod(sizes):
        problems.append(
            f"search.trials: {search.trials} trials but the grid has only {math.prod(sizes)} points; "
            f"ask for at most {math.prod(sizes)}"
        )
    return problems


def distributions(search: SearchConfig) -> dict[str, Any]:
    """The space as Optuna distributions, keyed by the dotted config key."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    found: dict[str, Any] = {}
    for key, parameter in search.space.items():
        if parameter.type == "categorical":
            found[key] = CategoricalDistribution(list(parameter.choices or []))
        elif parameter.type == "int":
            found[key] = IntDistribution(int(parameter.low or 0), int(parameter.high or 0), log=parameter.log,
                                         step=int(parameter.step or 1))  # fmt: skip
        else:
            found[key] = FloatDistribution(float(parameter.low or 0), float(parameter.high or 0), log=parameter.log,
                                           step=parameter.step)  # fmt: skip
    return found


def grid_points(search: SearchConfig) -> dict[str, list[Any]]:
    """Every value of each key, for Optuna's GridSampler."""
    return {key: parameter.points() or [] for key, parameter in search.space.items()}
