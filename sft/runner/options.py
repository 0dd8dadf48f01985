"""How `run-experiments` runs a grid (`Options`), and what is wrong with that: checked before the grid is,
instantly, and again against the grid before anything runs.

The options hold nothing any one executor alone reads: the executor's name and its own options object
(`RayOptions`, `SlurmOptions`; None for an executor that takes none, or to take its defaults). The command
line builds each executor's options from that executor's flags; `executor_options` keeps the chosen
executor's and names the flags given for another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sft.config import DEFAULT_SEED, ConfigError, ExperimentConfig, seed_problem
from sft.runner.executors import EXECUTORS, ExecutorOptions, options_type, places_gpus
from sft.tracking.settings import TrackingOptions


@dataclass
class Options:
    """How `run-experiments` runs a grid (see the CLI help for each)."""

    seeds: Sequence[int] = (DEFAULT_SEED,)
    gpus: list[str] | None = None
    jobs: int = 1
    executor: str = "forkserver"
    executor_options: ExecutorOptions | None = None  # the executor's own options; None: its defaults
    timeout: float | None = None
    retries: int = 0
    force: bool = False
    dry_run: bool = False
    grace_seconds: float = 10.0
    share_training: bool = True  # False: every experiment trains its own adapter (--no-share-training)
    tracking: TrackingOptions | None = None  # --track: a parent run and a child per run in a tracker (sft.tracking)


def executor_options(executor: str, given: Sequence[ExecutorOptions]) -> tuple[ExecutorOptions | None, list[str]]:
    """The options of `executor` among those built from the command line (one per executor with flags), and
    the problems of the others: flags given for an executor that does not run the grid are refused rather
    than ignored."""
    kind = options_type(executor)
    chosen = next((options for options in given if kind is not None and isinstance(options, kind)), None)
    return chosen, [problem for options in given if options is not chosen for problem in options.problems(False)]


def option_problems(options: Options) -> list[str]:
    """What is wrong with the options themselves, whatever the grid: checked before the grid is, instantly.
    New options add their checks here."""
    problems = EXECUTORS.unknown([options.executor])
    problems += [problem for seed in options.seeds if (problem := seed_problem(seed, "--seeds"))]
    if options.timeout is not None and not options.timeout > 0:
        problems.append(f"--timeout must be a positive number of seconds (got {options.timeout:g}); omit it for none")
    if options.gpus is not None and places_gpus(options.executor):
        problems.append(f"--gpus: {options.executor} assigns GPUs itself (resources.gpus per experiment); drop --gpus")
    if options.executor in EXECUTORS:
        problems += _executor_option_problems(options.executor, options.executor_options)
    if options.gpus is not None and not options.gpus:
        problems.append("--gpus: give at least one GPU id, e.g. --gpus 0,1")
    if options.jobs < 1:
        problems.append("--jobs must be at least 1")
    if options.retries < 0:
        problems.append("--retries must be 0 or more")
    problems += options.tracking.problems() if options.tracking is not None else []
    return problems


def _executor_option_problems(executor: str, given: ExecutorOptions | None) -> list[str]:
    """The executor's own options checked (their defaults when none were given), or refused when they are
    another executor's."""
    kind = options_type(executor)
    if given is not None and (kind is None or not isinstance(given, kind)):
        return given.problems(False)
    chosen = given if given is not None else kind() if kind is not None else None
    return chosen.problems(True) if chosen is not None else []


def gpu_problems(gpus: list[str] | None) -> list[str]:
    """`--gpus` ids that are not GPUs of this machine (counted by torch, so CUDA_VISIBLE_DEVICES applies).
    Imports torch, so it runs only when --gpus is given."""
    if not gpus:
        return []
    bad = [gpu for gpu in gpus if not gpu.isdigit()]
    if bad:
        return [f"--gpus: {', '.join(map(repr, bad))} is not a GPU number; give ids like --gpus 0,1"]
    import torch

    present = torch.cuda.device_count()
    missing = [gpu for gpu in gpus if int(gpu) >= present]
    if missing:
        have = f"GPUs 0-{present - 1}" if present else "no GPU torch can use"
        return [
            f"--gpus {','.join(gpus)}: GPU {', '.join(missing)} not found; this machine has {have}. "
            "Drop --gpus to run on the CPU (--jobs N runs N at once)"
        ]
    return []


def check_options(configs: dict[str, ExperimentConfig], options: Options) -> None:
    """Everything wrong with the options for this grid, at once, before anything runs."""
    problems = option_problems(options)
    if options.gpus and not places_gpus(options.executor):
        for name, config in configs.items():
            if config.resources.gpus > len(options.gpus):
                problems.append(
                    f"{name}: resources.gpus is {config.resources.gpus} but --gpus gives {len(options.gpus)}"
                )
    if problems:
        raise ConfigError(problems)
