"""The shared-adapter protocol of a few-shot run: train once per training key and seed, reuse after.

A run whose adapter is shared (`Run.share_training`, the default) takes its key's lock
(`sft.results.adapters`), reuses the stored adapter when its `ready.json` reads, else trains and
publishes it (adapter first, marker last) before releasing the lock, so every other run of the key and
seed waiting on the lock reuses it. `Run.share_training=False` trains its own adapter into the run
folder. Under data-parallel `accelerate launch` rank 0 decides under the lock and every rank follows.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sft.config import ConfigError, ExperimentConfig
from sft.predictors.base import Loaded
from sft.results.adapters import ReadyRecord, SharedAdapter, shared_adapter
from sft.results.layout import Run
from sft.results.run_record import REUSED
from sft.training.common import is_main_process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Training:
    """What a few-shot run did about its adapter: trained it (the model is still in memory) or reused the
    one another run trained (its statistics come from the store)."""

    source: str  # TRAINED or REUSED
    folder: Path
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None  # time this run spent training; None when reused
    loaded: Loaded | None = None


def adapter_folder(config: ExperimentConfig, run: Run) -> Path:
    """Where this run's trained adapter is (or goes): the shared one of its key and seed, or its own."""
    shared = shared_adapter(config, run)
    return shared.adapter_folder if shared is not None else run.adapter_folder


def adapter_to_load(config: ExperimentConfig, run: Run) -> str | None:
    """The adapter predict/evaluate apply: model.adapter, else this experiment's own trained one, else the
    shared one of its training key and seed."""
    if config.model.adapter:
        return config.model.adapter
    if not config.trains:
        return None
    if (run.adapter_folder / "adapter_config.json").exists():
        return str(run.adapter_folder)
    shared = shared_adapter(config, run)
    if shared is not None and shared.ready():
        return str(shared.adapter_folder)
    where = run.adapter_folder if shared is None else f"{run.adapter_folder} or {shared.adapter_folder}"
    raise ConfigError(
        [
            f"dataset.shots > 0 but no trained adapter at {where}: run `train` (or `run-experiment`) "
            "first with the same --results-path and --random-seed, or set model.adapter"
        ]
    )


def train_or_reuse(config: ExperimentConfig, run: Run, train: Callable[[], Training]) -> Training:
    """The run's adapter: `train()` it, unless the store already holds the one of its key and seed. The
    key's lock is held while deciding, training and publishing (`keep`), so waiting runs reuse it."""
    shared = shared_adapter(config, run)
    if shared is None:
        return train()
    with _key_turn(shared) as info:
        if info is None:
            return train()
    log.info("Reusing the adapter of training key %s seed %d (trained by %s)", shared.key, run.seed, info.trained_by)
    return Training(REUSED, shared.adapter_folder, info.training)


def keep(
    config: ExperimentConfig, run: Run, save: Callable[[Path], Any], stats: dict[str, Any], seconds: float
) -> Path:
    """Save a freshly trained adapter with `save(folder)` (call on the main process, inside `train_or_reuse`'s
    `train`): into the store, marker last, when shared; else into the run folder. Returns its folder."""
    shared = shared_adapter(config, run)
    if shared is None:
        save(run.adapter_folder)
        return run.adapter_folder
    return shared.publish(save, ready_record(config, run, stats, seconds))


def ready_record(config: ExperimentConfig, run: Run, stats: dict[str, Any], seconds: float) -> ReadyRecord:
    """The store's marker for the adapter `run` trained."""
    return ReadyRecord(
        training_key=str(config.training_key()),
        seed=run.seed,
        trained_by=run.name,
        training=stats,
        train_seconds=seconds,
        training_settings=config.training_settings(),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


@contextlib.contextmanager
def _key_turn(shared: SharedAdapter) -> Iterator[ReadyRecord | None]:
    """Hold the key's lock (the main process does); yield the ready adapter's marker, or None: train it.

    Under data-parallel `accelerate launch` every rank must decide alike: rank 0 decides under the lock
    and broadcasts its decision, and holds the lock until the adapter is published."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        with shared.lock():
            info = shared.info()
            if info is None:
                shared.clear_leftovers()
            yield info
        return
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    PartialState()  # joins the process group the trainer uses
    lock = shared.lock() if is_main_process() else contextlib.nullcontext()
    with lock:
        decision: list[ReadyRecord | None] = [None]
        if is_main_process():
            decision = [shared.info()]
            if decision[0] is None:
                shared.clear_leftovers()
        broadcast_object_list(decision, from_process=0)
        yield decision[0]
