"""Each parallel slot's share of the CPU cores.

Left alone, every experiment's torch starts as many intra-op (OpenMP) threads as the machine has cores,
so `--jobs 2` on 2 cores runs 4 compute threads and 8 GPU slots run 8 x (all cores); OpenMP threads
spin while they wait for each other, and a training step that takes 1 s with one thread per core takes
7-10 s when two such pools fight over the same cores. So the runner gives each slot a disjoint set of
cores: the experiment's process is pinned to them (Linux CPU affinity) and runs as many intra-op threads
as it has cores (OMP_NUM_THREADS / MKL_NUM_THREADS in its environment, which torch reads when it starts
its pool; a fork server child, whose libraries were loaded before, also calls `torch.set_num_threads`).
Under Ray the experiment gets `num_cpus` threads, on Slurm `--cpus-per-task` (both place the process
themselves). A user who set OMP_NUM_THREADS decides alone: then the runner sets nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
CORES_ENV = "SFT_CPU_CORES"  # the cores a fork server child pins itself to (comma-separated)


def user_set_threads() -> bool:
    """True when the user chose the thread count (the runner then leaves threads and affinity alone)."""
    return "OMP_NUM_THREADS" in os.environ


def available_cores() -> list[int]:
    """The cores this process may run on (its affinity mask on Linux, else 0..cpu_count-1)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_shares(cores: Sequence[int], slots: int) -> list[list[int]]:
    """Split `cores` into `slots` disjoint, contiguous groups whose sizes differ by at most one.

    With more slots than cores every slot still gets one core (slot i: core i mod n): slots then share
    cores, but each runs a single thread on it instead of one per core of the machine."""
    if slots < 1:
        raise ValueError("slots must be at least 1")
    cores = list(cores)
    if not cores:
        return [[] for _ in range(slots)]
    if slots >= len(cores):
        return [[cores[slot % len(cores)]] for slot in range(slots)]
    size, extra = divmod(len(cores), slots)
    shares, start = [], 0
    for slot in range(slots):
        end = start + size + (1 if slot < extra else 0)
        shares.append(cores[start:end])
        start = end
    return shares


def thread_env(threads: int | None) -> dict[str, str]:
    """The environment that gives a child `threads` intra-op threads ({} when the user set them)."""
    if threads is None or threads < 1 or user_set_threads():
        return {}
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def cores_env(cores: Sequence[int] | None) -> dict[str, str]:
    if not cores or user_set_threads():
        return {}
    return {CORES_ENV: ",".join(str(core) for core in cores)}


def pin(cores: Sequence[int] | None) -> None:
    """Restrict this process (and what it starts later) to `cores`; a no-op off Linux or without cores."""
    if cores and hasattr(os, "sched_setaffinity"):
        # a core outside this container's set: run unpinned rather than not at all
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(cores))


def apply_in_child(env: dict[str, str]) -> None:
    """In a forked child whose libraries are already loaded: pin to its cores and size torch's pool."""
    cores = [int(core) for core in env.get(CORES_ENV, "").split(",") if core.strip()]
    pin(cores)
    threads = env.get("OMP_NUM_THREADS")
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
