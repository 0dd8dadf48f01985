"""Atomic file writes and JSON reading.

Every result file is written to a temporary file in the same folder and renamed over the target, so a
killed process leaves either the old file or the new one, never a partial one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> Path:
    """Write `data` to `path` through a temporary file and a rename; `durable` also syncs it to disk
    first (results must survive a power loss; a cache entry that does not is recomputed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary file and a rename."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    lines = (json.dumps(row, ensure_ascii=False, default=str) for row in rows)
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every line's JSON value. The lines are parsed as one JSON array (twice as fast as line by line,
    which the report notices on a grid's predictions); a file that does not parse is read again line by
    line, so the error names the line it is in."""
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    try:
        found = json.loads("[" + ",".join(lines) + "]")
        if len(found) == len(lines):  # a line holding two values would shift the count
            return found
    except ValueError:
        pass
    return [json.loads(line) for line in lines]


def lock_held_elsewhere(path: Path) -> bool:
    """True while another open file holds an exclusive flock on `path` (probed without creating it).
    The runner's run lock and the shared adapter store both lock this way."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# --- a full disk ---------------------------------------------------------------------------------------------------

DISK_FULL_EXIT = 28  # how an experiment that ran out of space exits (ENOSPC's number), so the runner can say so
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# how the libraries that write weights word it when they wrap the OSError (safetensors: Rust's StorageFull)
_DISK_FULL_WORDS = ("no space left on device", "disk quota exceeded", "storagefull")


def disk_full(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is a write refused for lack of space (or quota)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if any(words in str(current).lower() for words in _DISK_FULL_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_reason(path: str | Path) -> str:
    """Why a write under `path` failed, naming where: the filesystem (its mount point) and its free space now."""
    path = Path(os.path.abspath(path))
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    mount = existing
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        free = f"{shutil.disk_usage(existing).free / 2**20:.1f} MiB free now"
    except OSError:
        free = "free space unknown"
    return f"disk full: no space left on the filesystem at {mount} (writing under {path}; {free}); free space and rerun"
