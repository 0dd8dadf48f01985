"""Resume decisions and run locks for the grid runner.

An experiment/seed is finished when its `results.json` (written last and atomically) reads
(`ResultsRecord`, of this version or an older one) and carries the hash of the current config; a rerun
skips it. Results of a changed config, results this sft cannot read (or any results, with `--force`)
are moved to `previous/<time>-<old hash>/` in the run folder before the run starts
again, never overwritten. A runner holds an exclusive `flock` on the run folder's `.lock` while the
experiment runs, so two runners sharing a results folder never run the same experiment at once; the
kernel drops the lock when the runner dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sft.results.files import lock_held_elsewhere
from sft.results.layout import Run
from sft.results.run_record import ResultsRecord
from sft.results.states import RunState, StatusRecord

LOCK_NAME = ".lock"
PREVIOUS = "previous"


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str
    set_aside: bool = False  # move the old results out of the way first


def finished_hash(folder: Path) -> str | None:
    """The config hash of the finished results in `folder`, '' when unreadable, None when there are none."""
    results = folder / ResultsRecord.FILE
    if not results.exists():
        return None
    try:
        return ResultsRecord.read(results).config_hash
    except (OSError, ValueError):  # RecordError too: a file this sft cannot read is set aside, never lost
        return ""


def decide(run: Run, config_hash: str, force: bool = False) -> Decision:
    """Whether to run `run` again, and why."""
    found = finished_hash(run.folder)
    if found is None:
        status = _previous_state(run.folder)
        return Decision(True, f"no results yet{status}")
    if found == "":
        return Decision(True, "results.json unreadable (kept aside)", set_aside=True)
    if found != config_hash:
        return Decision(True, f"config changed ({found[:8]} -> {config_hash[:8]}; old results kept aside)", True)
    if force:
        return Decision(True, "--force (old results kept aside)", set_aside=True)
    return Decision(False, "finished with the same config hash")


def _previous_state(folder: Path) -> str:
    try:
        status = StatusRecord.read(folder / StatusRecord.FILE)
    except (OSError, ValueError):
        return ""
    return f"; last attempt {status.state}" if status.run_state in (RunState.FAILED, RunState.INTERRUPTED) else ""


def set_aside(folder: Path) -> Path:
    """Move every file of a run folder (but the lock and older sets) to `previous/<time>-<hash>/`."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    base = target = folder / PREVIOUS / f"{stamp}-{(finished_hash(folder) or 'unknown')[:8]}"
    suffix = 1
    while target.exists():
        target = base.with_name(f"{base.name}+{suffix}")
        suffix += 1
    target.mkdir(parents=True)
    for entry in folder.iterdir():
        if entry.name not in (LOCK_NAME, PREVIOUS):
            os.replace(entry, target / entry.name)
    return target


class RunLock:
    """A non-blocking exclusive lock on one run folder, held while its experiment runs."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def locked_elsewhere(folder: Path) -> bool:
    """True when another process holds the run's lock (checked without creating anything)."""
    return lock_held_elsewhere(folder / LOCK_NAME)
