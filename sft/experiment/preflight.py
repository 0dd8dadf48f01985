"""The whole validation pass before anything runs or is written: the grid's configs and data
(`sft.experiment.checks`), then every experiment's model checked by its predictor's `preflight` (the
model's files, config, tokenizer, chat format, device, LoRA targets and head on a meta-device skeleton,
the trainer's arguments), without loading weights.

`validate`, `run-experiments` and the single-experiment commands all go through here, so a config that
`validate` calls valid does not fail at load time for a reason that could have been known up front.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

from sft.config import ConfigError, ExperimentConfig
from sft.experiment.checks import config_problems, grid_problems, load_grid
from sft.predictors import predictor_for
from sft.predictors.base import quiet_libraries
from sft.tasks import task_for

log = logging.getLogger(__name__)


def model_problems(configs: dict[str, ExperimentConfig]) -> list[str]:
    """Each experiment's predictor preflight; each distinct model's config and tokenizer are read once."""
    quiet_libraries()
    started = time.perf_counter()
    problems = []
    with warnings.catch_warnings():  # the libraries' deprecation notices about a skeleton are not the user's
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, config in configs.items():
            task = task_for(config)
            problems += [f"[{name}] {problem}" for problem in predictor_for(config, task).preflight(config, task)]
    log.debug("Checked the models of %d experiment(s) in %.1f s", len(configs), time.perf_counter() - started)
    return problems


def experiment_problems(
    configs: dict[str, ExperimentConfig], check_data: bool = True, check_models: bool = True
) -> list[str]:
    """Everything wrong with parsed configs: what their task and predictor accept, library argument names,
    data, models. An experiment whose settings its predictor refuses is checked no further (its model
    preflight would judge a combination that cannot run)."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # imported with peft/trl; its CPU notice is noise
    refused = {name: config_problems(config) for name, config in configs.items()}
    problems = [f"[{name}] {problem}" for name, found in refused.items() for problem in found]
    usable = {name: config for name, config in configs.items() if not refused[name]}
    problems += grid_problems(usable, check_data)
    if check_models:
        problems += model_problems(usable)
    return problems


def validate(
    path: str | Path,
    ext_vars: dict[str, str] | None = None,
    command: str = "run-experiment",
    check_data: bool = True,
    check_models: bool = True,
) -> dict[str, ExperimentConfig]:
    """Expand and fully validate a grid or config file; raise one ConfigError with every problem found."""
    configs = load_grid(path, ext_vars, command)
    problems = experiment_problems(configs, check_data, check_models)
    if problems:
        raise ConfigError(problems)
    return configs
