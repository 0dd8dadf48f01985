"""The shared adapter store: one trained adapter per training key and seed, used by every experiment
with that key (`ExperimentConfig.training_key`), so a grid pays for each distinct training once.

    RESULTS/_adapters/<training key>/seed-<n>/
        .lock          flock held while the adapter is trained and published
        adapter/       the adapter and tokenizer, as `save_adapter` writes them
        ready.json     written last (atomically): what trained it, its training statistics

An adapter is *ready* only when `ready.json` reads: it is written after `adapter/` is complete, so a
process killed while training or saving leaves no marker, and the next holder of the lock removes the
leftovers and trains again. Whoever publishes holds the lock, an exclusive `flock` the kernel drops
when its holder dies (even by SIGKILL), so no stale lock survives a crash and two processes (parallel
slots, two runners on one results folder) never train the same key and seed twice.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from sft.results.files import lock_held_elsewhere
from sft.results.layout import Run, seed_folder
from sft.results.records import Record

STORE = "_adapters"  # starts with "_": the report never takes it for an experiment
READY = "ready.json"
LOCK = ".lock"
KEY_PATTERN = re.compile(r"^[0-9a-f]{16,64}$")


class ReadyRecord(Record):
    """`RESULTS/_adapters/<training key>/seed-<n>/ready.json`: the shared adapter beside it is complete.
    Written last, after the adapter, by the run that trained it; a run of the same key and seed reuses
    the adapter only when this file reads."""

    FILE: ClassVar[str] = READY
    UPGRADES: ClassVar[dict[int, Any]] = {0: dict}  # the first versioned form is the unversioned one

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    training_key: str = Field(description="The training key (`ExperimentConfig.training_key`) the adapter is for.")
    seed: int = Field(description="The seed it was trained with.")
    trained_by: str = Field(description="The experiment that trained it.")
    training: dict[str, Any] = Field(
        description="Its training statistics, as the training run's results.json records them."
    )
    train_seconds: float = Field(description="Seconds the training took.")
    training_settings: dict[str, Any] = Field(
        description="The settings the training key hashes (those that differ from the schema defaults)."
    )
    finished_at: str = Field(description="When it was published (ISO 8601, UTC).")


@dataclass(frozen=True)
class SharedAdapter:
    """The store's place for one training key and seed."""

    results_path: Path
    key: str
    seed: int

    def __post_init__(self) -> None:
        if not KEY_PATTERN.match(self.key):  # keys are hex digests; anything else could leave the folder
            raise ValueError(f"training key {self.key!r} is not a hex digest")

    @property
    def folder(self) -> Path:
        return Path(self.results_path).resolve() / STORE / self.key / seed_folder(self.seed)

    @property
    def adapter_folder(self) -> Path:
        return self.folder / "adapter"

    def info(self) -> ReadyRecord | None:
        """The marker when the adapter is ready, else None (not trained, a training died, or a marker this
        sft cannot read: the next holder of the lock trains again)."""
        try:
            return ReadyRecord.read(self.folder / READY)
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        return self.info() is not None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the key's lock (waiting for another holder to finish); the kernel releases it if we die."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def locked_elsewhere(self) -> bool:
        """True while another process holds the lock (is training this key and seed)."""
        return lock_held_elsewhere(self.folder / LOCK)

    def clear_leftovers(self) -> None:
        """Remove what a training killed before its marker left (call with the lock held, marker absent)."""
        for entry in self.folder.iterdir():
            if entry.name in (LOCK, READY):
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def publish(self, save: Callable[[Path], Any], info: ReadyRecord) -> Path:
        """Save the adapter with `save(folder)` into a staging folder, move it into place, then write the
        marker. Call with the lock held."""
        staging = self.folder / f".staging-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        try:  # a full disk or an error while saving: nothing half-written stays behind
            save(staging)
            _sync_tree(staging)
            if self.adapter_folder.exists():
                shutil.rmtree(self.adapter_folder)
            os.replace(staging, self.adapter_folder)
            info.write(self.folder / READY)
        except Exception:
            shutil.rmtree(staging, ignore_errors=True)
            if not (self.folder / READY).exists():
                shutil.rmtree(self.adapter_folder, ignore_errors=True)
            raise
        return self.adapter_folder


def shared_adapter(config: Any, run: Run) -> SharedAdapter | None:
    """The stored adapter a run of `config` (an ExperimentConfig) trains or reuses: the one of its training
    key and seed; None when it trains nothing, or trains its own (`run.share_training` False)."""
    key = config.training_key()
    if key is None or not run.share_training:
        return None
    return SharedAdapter(run.results_path, key, run.seed)


def _sync_tree(folder: Path) -> None:
    """fsync every file under `folder`, so the marker written after it never points at unwritten data."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
