"""From a grid file and the runner's options to a finished grid: what `run-experiments` does after parsing
its arguments.

The order is what a user wants from a grid that cannot run: the options are checked first, instantly (no
data, no models), and when they are wrong the grid's schema problems are named with them, so one pass fixes
both; only then are the data and the models checked, and the grid runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sft.config import ConfigError, ExperimentConfig
from sft.experiment.checks import load_grid
from sft.experiment.preflight import validate
from sft.report.aggregate import publish_report
from sft.results.layout import results_folder_problems
from sft.runner.executors import places_gpus
from sft.runner.options import Options, gpu_problems, option_problems
from sft.runner.scheduler import run_experiments
from sft.tracking.client import PRELOAD_ENV
from sft.tracking.publish import GridStart, deactivate

log = logging.getLogger(__name__)


def run_grid_file(
    grid: str | Path,
    ext_vars: dict[str, str],
    results_path: Path,
    options: Options,
    *,
    given_problems: list[str] | None = None,
    check_data: bool = True,
    check_models: bool = True,
) -> int:
    """Validate the grid file and run it; the exit code of `run_experiments`. `given_problems` are those the
    caller found in what it was given (flags of an executor that does not run the grid). Raises one
    ConfigError with every problem found before anything runs."""
    problems = option_problems(options) + list(given_problems or [])
    problems += [] if places_gpus(options.executor) or problems else gpu_problems(options.gpus)
    problems += [] if options.dry_run else results_folder_problems(results_path)
    if problems:
        try:
            load_grid(grid, ext_vars, "run-experiment")
        except ConfigError as error:
            problems += error.messages
        raise ConfigError(problems)
    configs = validate(grid, ext_vars, "run-experiment", check_data, check_models)
    if options.tracking is None or options.dry_run:
        if not options.dry_run:
            deactivate(results_path)  # this grid's runs must not log under a tracked grid's parent
        return run_experiments(configs, results_path, options)
    return run_tracked(configs, results_path, options)


# --- tracking (sft.tracking): the grid's parent run around it ------------------------------------------------------

# The parent run's end by the runner's exit code: 0 all done, 1 some failed, 130 interrupted (else: an error).
PARENT_STATUS = {0: "FINISHED", 1: "FAILED", 130: "KILLED"}


def run_tracked(configs: dict[str, ExperimentConfig], results_path: Path, options: Options, console: Any = None) -> int:
    """The grid with its parent run in the tracker: opened while the executor starts, then the run folders
    and the report published on it once the grid ends."""
    assert options.tracking is not None
    start = GridStart(results_path, options.tracking, configs)
    code: int | None = None
    previous = os.environ.get(PRELOAD_ENV)
    os.environ[PRELOAD_ENV] = options.tracking.resolved_uri(results_path)  # a fork server imports the client once
    try:
        code = run_experiments(configs, results_path, options, console)
        return code
    finally:
        if previous is None:
            os.environ.pop(PRELOAD_ENV, None)
        else:
            os.environ[PRELOAD_ENV] = previous
        tracked = start.opened()
        try:
            if tracked is not None and code is not None:
                publish_report(results_path, tracked)
        except Exception:  # the grid ran: publishing is `aggregate --track`'s to finish, never the grid's failure
            log.warning("Publishing the grid to the tracker failed", exc_info=True)
        if tracked is not None:
            tracked.close(PARENT_STATUS.get(code, "KILLED") if code is not None else "KILLED")
