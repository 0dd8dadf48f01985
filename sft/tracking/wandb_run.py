"""The end of a run's W&B run: the trainer's W&B reporter (`training.trainer_args.report_to: ["wandb"]`) opens
it in the run folder's `wandb/`, grouped by the grid (`sft.training.common.wandb_environment`), and logs the
training curves; it never sees the test split's metrics, which come after training. `finish_wandb` adds them to
the run's summary, with the run's identity (config hash, training key, seed), and ends it with the run's
outcome, so that `wandb sync` uploads runs that compare in W&B's table as they do in the report.

Nothing is imported here: the module is looked up where the trainer (or TRL, which imports it whenever it is
installed) loaded it, and a process whose trainer did not report to W&B has no active W&B run to finish. A run
that reused a shared adapter trained nothing here, so it has no W&B run of its own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sft.config import ExperimentConfig
from sft.results.layout import Run
from sft.results.run_record import ResultsRecord
from sft.tracking.params import final_metrics

log = logging.getLogger(__name__)
MAX_REASON = 5000


def active_run() -> Any:
    """The process's W&B run, when its trainer opened one and nobody finished it; else None."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def finish_wandb(config: ExperimentConfig, run: Run, failure: str | None = None) -> None:
    """End the process's W&B run: with the run's final metrics and exit code 0 when it finished, with the
    failure's reason and exit code 1 otherwise. Nothing when no W&B run is active."""
    active = active_run()
    if active is None:
        return
    identity = {"sft.experiment": run.name, "sft.seed": run.seed, "sft.config_hash": config.config_hash(),
                "sft.training_key": config.training_key() or ""}  # fmt: skip
    active.config.update(identity, allow_val_change=True)
    if failure is None:
        try:
            results = ResultsRecord.read(run.folder / ResultsRecord.FILE)
        except (OSError, ValueError) as error:  # a train-only process: its curves are all there is
            log.info("W&B: no results to add to the run's summary (%s)", error)
        else:
            active.summary.update({**final_metrics(results), "sft.state": "done"})
    else:
        active.summary.update({"sft.state": "failed", "sft.failure_reason": failure[:MAX_REASON]})
    sys.modules["wandb"].finish(exit_code=0 if failure is None else 1)


@contextmanager
def wandb_ended(config: ExperimentConfig, run: Run) -> Iterator[None]:
    """Around a run (or a search's trial): end the W&B run its trainer opened, with how the run ended. Never
    changes how the run ends, whatever goes wrong in W&B."""
    try:
        yield
    except KeyboardInterrupt:
        _safely(config, run, "interrupted")
        raise
    except BaseException as error:
        _safely(config, run, f"{type(error).__name__}: {error}")
        raise
    _safely(config, run, None)


def _safely(config: ExperimentConfig, run: Run, failure: str | None) -> None:
    try:
        finish_wandb(config, run, failure)
    except Exception:
        log.warning("Ending the W&B run failed; the results folder keeps everything", exc_info=True)
