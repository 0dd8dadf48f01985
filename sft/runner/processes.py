"""Starting a child process the way every executor must: in a new session (its own process group, so
stopping it reaches everything it starts) and with a parent-death signal (Linux `PR_SET_PDEATHSIG`),
so nothing outlives a runner even when the runner is killed with SIGKILL."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import IO, Any

from sft.runner.cpu_share import pin

PR_SET_PDEATHSIG = 1
_LIBC: Any = None


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """Ask Linux to send `signum` to this process when its parent dies; exit if it is already gone."""
    global _LIBC
    if not sys.platform.startswith("linux"):
        return
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    _LIBC.prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def start_child(
    command: list[str],
    stdout: IO[Any] | int | None,
    env: dict[str, str] | None = None,
    stdin: IO[Any] | int | None = subprocess.DEVNULL,
    stderr: IO[Any] | int | None = subprocess.STDOUT,
    cores: Sequence[int] | None = None,
) -> subprocess.Popen:
    """`command` in a new session that dies with this process, pinned to `cores` if given; `env` is
    added to this process's environment. Safe to call from the runner and executors, which start no
    threads before forking."""
    parent = os.getpid()

    def prepare() -> None:
        die_with_parent(parent)
        pin(cores)

    return subprocess.Popen(
        command,
        stdout=stdout,
        stderr=stderr,
        stdin=stdin,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        preexec_fn=prepare,
    )


def signal_group(pid: int | None, signum: int) -> None:
    """Send `signum` to the process group led by `pid` (the experiment and everything it started)."""
    if pid is None or pid <= 0:
        return
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return
    except PermissionError:  # not yet its own group leader (fork server child before setsid)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return


def describe_exit(code: int) -> str:
    """`exit code 3`, `killed by SIGKILL`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
