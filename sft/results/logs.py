"""The one log format of every sft process, the run's own `run.log`, and reading a log's last lines."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TAIL_LINES = 20
# Set by the grid runner, which already sends the child's whole output to run.log.
RUNNER_LOG_ENV = "SFT_RUN_LOG_CAPTURED"

log = logging.getLogger(__name__)


def setup_logging(level: int = logging.INFO) -> None:
    """Log records of every library to stderr in LOG_FORMAT (replacing earlier handlers)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


def tail(path: str | Path, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of a text file; '' when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])


@contextlib.contextmanager
def run_log(folder: Path, description: str) -> Iterator[None]:
    """Copy this process's log records into `folder/run.log` (unless the runner captures the whole output),
    and log an exception that escapes with `description`."""
    if os.environ.get(RUNNER_LOG_ENV):
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    except Exception:
        log.exception("%s failed", description)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
