"""Executors: how the grid runner starts one experiment in a fresh process and learns how it ended.

Every executor gives each experiment its own process (GPU memory and global state never leak from one
experiment into the next) in its own session, so the runner can stop the experiment together with
anything it started (data loader workers, `accelerate launch` ranks) by signalling its process group.

- `subprocess`: `python -m sft.cli run-experiment ...`; pays the import of torch, transformers, trl
  and peft (about 10 s) for every experiment.
- `forkserver` (the default): one server process per runner imports those libraries once, never
  initializes CUDA, and forks a child per experiment (see `sft.runner.forkserver`). Experiments launched
  through `accelerate launch` still use a plain subprocess.
- `ray`: each experiment is a Ray task with the GPUs it asks for (see `sft.runner.ray_executor`).
- `slurm`: each experiment is a Slurm job (see `sft.runner.slurm_executor`).

Every executor is built from the same `ExecutorContext` (the grid's results folder and timeout) and, when
it has settings of its own, from its own options type (`RayOptions`, `SlurmOptions`), named in its registry
entry with its traits; the grid runner's options hold the executor's name and that one object.

Children die with the runner even when it is killed with SIGKILL: they ask the kernel for a signal
when their parent dies (Linux `PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from sft.config import ExperimentConfig
from sft.registry import Registry, resolve
from sft.results.layout import Run
from sft.results.logs import RUNNER_LOG_ENV
from sft.runner.cpu_share import cores_env, thread_env
from sft.runner.processes import signal_group, start_child


@dataclass
class Job:
    """One experiment/seed to start: its config file, its log file and the GPUs given to it."""

    run: Run
    config: ExperimentConfig
    config_file: Path
    log_path: Path
    gpus: list[str] | None  # None: the runner manages no GPUs (CPU slots)
    cores: list[int] | None = None  # the slot's share of this machine's cores (local executors)
    threads: int | None = None  # intra-op threads: len(cores) locally, the CPUs Ray or Slurm give it

    def visible_gpus(self) -> list[str]:
        """The runner's GPUs for this job, else those the environment (e.g. a Ray worker) makes visible."""
        if self.gpus is not None:
            return self.gpus
        return [gpu for gpu in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if gpu.strip()]

    def env(self) -> dict[str, str]:
        """Environment added to the child's: the runner captures its output; the GPUs it may use."""
        extra = {RUNNER_LOG_ENV: "1", "TOKENIZERS_PARALLELISM": "false"}
        if self.gpus is not None:
            extra["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        if self.config.resources.launcher == "accelerate" and not self.visible_gpus():
            extra["ACCELERATE_USE_CPU"] = "true"  # data parallel over CPU processes (gloo)
        return {**extra, **thread_env(self.threads), **cores_env(self.cores)}

    def cpus(self) -> int:
        """CPUs to ask a cluster (Ray, Slurm) for: resources.cpus, else one per process."""
        resources = self.config.resources
        return resources.cpus or resources.processes()

    def with_threads(self, threads: int) -> Job:
        """This job with `threads` intra-op threads per process (a cluster places it; no pinning here)."""
        return replace(self, cores=None, threads=max(1, threads // self.config.resources.processes()))


# How the grid runner starts each experiment; names and traits are known without importing an executor,
# so `--executor` and its options are checked before anything else. Traits (the entry's metadata):
# - options: "module:Class" of the executor's own options type (absent: the executor takes none);
# - places_gpus: the executor gives each experiment its `resources.gpus` itself (no `--gpus` slots).
EXECUTORS = Registry("executor")
EXECUTORS.add("forkserver", "sft.runner.forkserver:ForkServerExecutor")
EXECUTORS.add("subprocess", "sft.runner.executors:SubprocessExecutor")
EXECUTORS.add(
    "ray", "sft.runner.ray_executor:RayExecutor", options="sft.runner.ray_executor:RayOptions", places_gpus=True
)
EXECUTORS.add(
    "slurm",
    "sft.runner.slurm_executor:SlurmExecutor",
    options="sft.runner.slurm_executor:SlurmOptions",
    places_gpus=True,
)


def places_gpus(name: str) -> bool:
    """Whether executor `name` gives each experiment its GPUs itself (Ray, Slurm) rather than from `--gpus`;
    False for a name that is not registered (refused on its own by the option checks)."""
    return name in EXECUTORS and bool(EXECUTORS.info(name).get("places_gpus"))


def options_type(name: str) -> type[ExecutorOptions] | None:
    """The options type of executor `name` (imported on first use), or None when it takes none or is not
    registered."""
    target = EXECUTORS.info(name).get("options") if name in EXECUTORS else None
    if target is None:
        return None
    kind: type[ExecutorOptions] = resolve(target)
    return kind


@dataclass(frozen=True)
class ExecutorContext:
    """What every executor is built from: where the grid's results go, and the grid's `--timeout` (a cluster
    executor may turn it into the job's own time limit)."""

    results_path: Path
    timeout: float | None = None


class ExecutorOptions(Protocol):
    """An executor's own settings, from its own command-line flags (e.g. `--ray-address`, `--slurm-*`)."""

    def given(self) -> bool:
        """Whether any setting differs from the defaults (the user gave one of its flags)."""

    def problems(self, chosen: bool) -> list[str]:
        """What is wrong with the settings; `chosen`: their executor runs the grid (else they were given
        for another executor, which is an error of its own)."""


class Handle(Protocol):
    """A started experiment. `poll` returns None while it runs, then its exit code (-N: killed by signal N)."""

    pid: int | None

    def poll(self) -> int | None: ...

    def started(self) -> bool:
        """True once the experiment's process exists (its timeout counts from then)."""

    def signal(self, signum: int) -> None: ...

    def end_reason(self) -> str:
        """Why the executor says it ended, when that says more than the exit code (a Slurm time limit,
        a node failure); '' otherwise."""

    def details(self) -> dict[str, Any]:
        """Executor-specific facts for status.json (a Slurm job id and state, a Ray node)."""


class Executor(Protocol):
    def start(self, job: Job) -> Handle: ...

    def close(self) -> None: ...


def get_executor(name: str, context: ExecutorContext, options: ExecutorOptions | None = None) -> Executor:
    """Executor `name` built from the context and its own options (their defaults when None)."""
    factory = EXECUTORS.get(name)
    kind = options_type(name)
    if kind is None:
        if options is not None:
            raise TypeError(f"executor {name!r} takes no options, got {type(options).__name__}")
        return factory(context)
    return factory(context, options if options is not None else kind())


def accelerate_command(job: Job) -> list[str]:
    """`accelerate launch` of `run-experiment` with one process per GPU (or per CPU process)."""
    gpus = len(job.visible_gpus())
    processes = job.config.resources.processes(gpus)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    # `--cpu` would run a single process: several processes (GPU or CPU, gloo) go through torchrun
    launch += ["--multi_gpu"] if processes > 1 else [] if gpus else ["--cpu"]
    return [*launch, "-m", *experiment_arguments(job)]


def experiment_arguments(job: Job) -> list[str]:
    run = job.run
    return [
        "sft.cli", "run-experiment", str(job.config_file),
        "--name", run.name, "--random-seed", str(run.seed), "--results-path", str(run.results_path),
        *([] if run.share_training else ["--no-share-training"]),
    ]  # fmt: skip


def child_command(job: Job) -> list[str]:
    if job.config.resources.launcher == "accelerate":
        return accelerate_command(job)
    return [sys.executable, "-m", *experiment_arguments(job)]


def note(log_path: Path, text: str) -> None:
    """A line from the runner itself in an experiment's log."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"sft runner: {text}\n")


class ProcessHandle:
    """A child started with subprocess in its own session."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str], cores: list[int] | None = None):
        with open(log_path, "a", encoding="utf-8") as log:
            self.process = start_child(command, stdout=log, env=env, cores=cores)
        self.pid: int | None = self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def started(self) -> bool:
        return True

    def signal(self, signum: int) -> None:
        signal_group(self.pid, signum)

    def end_reason(self) -> str:
        return ""

    def details(self) -> dict[str, Any]:
        return {}


class SubprocessExecutor:
    """`python -m sft.cli run-experiment` per experiment: simple, and pays the library imports each time."""

    def __init__(self, context: ExecutorContext):
        """Takes the context every executor is built from; a fresh process per experiment needs none of it."""

    def start(self, job: Job) -> Handle:
        return ProcessHandle(child_command(job), job.log_path, job.env(), job.cores)

    def close(self) -> None:
        pass
