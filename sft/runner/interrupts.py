"""SIGINT and SIGTERM anywhere in a command: the command stops and exits 130, whatever it was doing.

Python turns SIGINT into KeyboardInterrupt, which the command-line library reports as an abort (exit 1),
and leaves SIGTERM at its default (the process dies with -15, skipping every cleanup). A batch system or a
script that waits for 130 (the shell's "ended by an interrupt") saw either. `exit_130_on_interrupt` makes
both signals raise `Interrupted` (a BaseException, so no `except Exception` swallows it) once, so every
`finally` and `except BaseException` cleanup runs (partial files removed, children stopped), and the
command exits 130. The grid runner's scheduling loop installs its own handlers for its graceful stop
(`sft.runner.scheduler`) and gives these back when it leaves, so a signal before, between or after the
loop (expansion, validation, the final report) lands here.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

INTERRUPTED = 130  # the exit code of a command stopped by SIGINT or SIGTERM
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Raised by the first SIGINT or SIGTERM; the command exits 130."""


@contextmanager
def exit_130_on_interrupt() -> Iterator[None]:
    """Inside the block, the first SIGINT or SIGTERM raises `Interrupted` (later ones are ignored while the
    cleanups run); leaving through it exits 130 with one line on stderr."""
    raised = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Interrupted(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    except Interrupted as interrupt:
        print(f"Interrupted ({interrupt}); rerun to resume.", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
