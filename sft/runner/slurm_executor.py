"""The `slurm` executor: each experiment and seed is its own Slurm job (or array task), via submitit.

The job runs the experiment the way `sft.cli run-experiment` does (in the job's own fresh process),
with as many intra-op threads as Slurm gave it CPUs (`--cpus-per-task`: resources.cpus,
else one per process), `resources.gpus` GPUs when the partition has any, and `resources.memory_gb`.
Where it runs comes from the command line (`--slurm-partition/-account/-qos/-time/-setup/-args`).
The results folder must be on storage that every node sees: the job writes its results and run.log
there, and submitit keeps its own files in `<results>/.slurm/`.

The experiments that start together (with equal resource requests) go to Slurm as one job array,
which spares the scheduler hundreds of single submissions; each array task is still its own job with
its own state. The runner keeps the local guarantees: it records every job's id in the run folder
(`slurm_job.json`); a rerun after a runner was killed (even with SIGKILL) finds a job of the run that is
still pending or running and waits for it instead of submitting it again; an interrupt or a
`--timeout` cancels with `scancel`, and `--retries` submits a failed run again. How a job ended comes
from Slurm's own job state (see `sft.runner.slurm_states`), never from a guess; submitit's
requeue-on-signal is switched off in the job, so a time limit reads as TIMEOUT and a crash as FAILED,
not as a completed job.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sft.runner.cpu_share import apply_in_child
from sft.runner.executors import ExecutorContext, Job, child_command, note
from sft.runner.forkserver import run_child
from sft.runner.processes import start_child
from sft.runner.slurm_record import SlurmJobRecord
from sft.runner.slurm_states import JobState, cancel, job_states

JOB_FILE = SlurmJobRecord.FILE  # in the run folder: the id of the job that runs (or ran) it
REFRESH_SECONDS = 1.0  # how often the runner asks Slurm about its jobs (one scontrol per active job)
UNKNOWN_GRACE = 60.0  # seconds a job may be unknown to Slurm before the runner counts it as vanished


@dataclass
class SlurmOptions:
    """Where the jobs run (see `run-experiments --help`); what each needs comes from `resources`."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # Slurm's format: minutes, or [days-]hours:minutes:seconds
    setup: list[str] = field(default_factory=list)  # shell lines before the experiment, e.g. module load
    args: list[str] = field(default_factory=list)  # key=value: any other sbatch option

    def given(self) -> bool:
        return self != SlurmOptions()

    def problems(self, chosen: bool) -> list[str]:
        """What is wrong with the Slurm options, before anything runs; `chosen`: `--executor slurm` runs the
        grid (so sbatch must be here), else the options were given for another executor."""
        problems = []
        if not chosen and self.given():
            problems.append("--slurm-* options apply to --executor slurm only; add it or drop them")
        if chosen and shutil.which("sbatch") is None:
            problems.append("--executor slurm: sbatch is not on PATH; run sft on a Slurm login node")
        return problems + [
            f"--slurm-args {arg!r}: write key=value (an sbatch option without its dashes), e.g. constraint=a100"
            for arg in self.args
            if "=" not in arg or not arg.split("=", 1)[0].strip()
        ]

    def sbatch_args(self) -> dict[str, str]:
        return dict((key.strip().lstrip("-"), value) for key, value in (arg.split("=", 1) for arg in self.args))


def run_in_job(job: Job) -> int:
    """Body of the Slurm job (run by submitit on the node). The job's process is already fresh and
    has the config modules loaded, so it runs the experiment itself, with its output in run.log;
    `accelerate launch` experiments run as a child process. The job ends the way the experiment did:
    its exit code, or killed by the same signal (which the batch shell reports as 128 + N)."""
    # submitit answers its warning signal by requeuing or by ending the job as if it had completed;
    # Slurm's own TIMEOUT / PREEMPTED / CANCELLED states are what the runner reads instead.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or job.cpus())
    job = job.with_threads(cpus)
    note(job.log_path, f"Slurm job {os.environ.get('SLURM_JOB_ID')} on {socket.gethostname()}, {cpus} CPU(s)")
    sys.stdout.flush()
    sys.stderr.flush()
    if job.config.resources.launcher != "python":
        with open(job.log_path, "a", encoding="utf-8") as log:
            process = start_child(child_command(job), stdout=log, env=job.env())
        code = process.wait()
    else:
        code = _run_here(job)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if code >= 0 else 128 - code)


def _run_here(job: Job) -> int:
    """The experiment in this process, as `sft.cli run-experiment` would run it; its exit code."""
    log = os.open(job.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    environment = job.env()
    os.environ.update(environment)
    apply_in_child(environment)  # torch may already be loaded (by a sitecustomize): size its pool
    request = {
        "config_file": str(job.config_file),
        "name": job.run.name,
        "seed": job.run.seed,
        "share_training": job.run.share_training,
    }
    try:
        return run_child({**request, "results_path": str(job.run.results_path)})
    except SystemExit as error:
        return error.code if isinstance(error.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1


class SlurmHandle:
    """A job of this runner. Its submission waits for the runner's next look at it, so the experiments
    that start together go to Slurm together (one job array per set of equal resource requests)."""

    pid = None

    def __init__(self, executor: SlurmExecutor, job_id: str | None = None, adopted: bool = False):
        self.executor, self.job_id, self.adopted = executor, job_id, adopted
        self.final: JobState | None = None
        self.failure = ""  # why sbatch refused it
        self.cancelled = False

    def _state(self) -> JobState | None:
        if self.job_id is None and not self.failure:
            self.executor.submit_pending()
        return None if self.job_id is None else self.executor.state(self.job_id)

    def poll(self) -> int | None:
        if self.failure:
            return 255
        if self.final is None:
            state = self._state()
            if state is None or state.active:
                return None
            self.final = state
        return self.final.code()

    def started(self) -> bool:
        if self.failure or self.final is not None:
            return True
        state = self._state()
        return state is not None and state.started

    def signal(self, signum: int) -> None:
        """Any stop request cancels the job once (Slurm sends SIGTERM, then SIGKILL after KillWait)."""
        if self.job_id is None and not self.failure and self.executor.withdraw(self):
            self.failure = "stopped before it was submitted"
            return
        if self.job_id is not None and self.final is None and not self.cancelled:
            self.cancelled = True
            self.executor.cancel(self.job_id)

    def end_reason(self) -> str:
        if self.failure:
            return f"sbatch failed: {self.failure}"
        return self.final.end_reason() if self.final else ""

    def details(self) -> dict[str, Any]:
        """Status fields; never submits (the runner asks for them right after each start)."""
        state = self.final or (self.executor.states.get(self.job_id) if self.job_id else None)
        return {
            "slurm_job_id": self.job_id,
            "slurm_state": state.state if state else None,
            "slurm_node": (state.node or None) if state else None,
            "slurm_restarts": state.restarts if state else 0,
            "slurm_reason": (state.reason if state.reason not in ("", "None") else None) if state else None,
            "adopted": self.adopted,  # submitted by an earlier runner that was killed
        }


class SlurmExecutor:
    """Submits one Slurm job (or job array task) per experiment and seed from this (login) node."""

    def __init__(self, context: ExecutorContext, options: SlurmOptions):
        import submitit

        self.options = options
        results = Path(context.results_path).resolve()
        self.folder = results / ".slurm"
        self.name = f"sft:{results.name}"
        self.executor = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=0)
        timeout = context.timeout  # the grid's --timeout, as Slurm's time limit when --slurm-time is not given
        self.time = self.options.time or (str(math.ceil(timeout / 60) + 1) if timeout else None)
        self.has_gpus = _partition_has_gpus(self.options.partition)
        self.states: dict[str, JobState] = {}
        self.refreshed = 0.0
        self.unknown_since: dict[str, float] = {}
        self.cancelled: set[str] = set()
        self.pending: list[tuple[Job, SlurmHandle]] = []

    def start(self, job: Job) -> SlurmHandle:
        run = replace(job.run, results_path=job.run.results_path.resolve())
        job = replace(job, run=run, config_file=job.config_file.resolve(), log_path=job.log_path.resolve())
        earlier = self._earlier_job(job)
        if earlier is not None:
            note(job.log_path, f"waiting for Slurm job {earlier.job_id}, submitted by an earlier runner")
            self.states[earlier.job_id] = earlier
            return SlurmHandle(self, earlier.job_id, adopted=True)
        handle = SlurmHandle(self)
        self.pending.append((job, handle))
        return handle

    def cancel(self, job_id: str) -> None:
        self.cancelled.add(job_id)
        cancel(job_id)

    def withdraw(self, handle: SlurmHandle) -> bool:
        """Drop a job not submitted yet; False if it was."""
        kept = [(job, pending) for job, pending in self.pending if pending is not handle]
        withdrawn, self.pending = len(kept) < len(self.pending), kept
        return withdrawn

    def submit_pending(self) -> None:
        """Submit the jobs started since the last call: one array per set of equal sbatch parameters."""
        groups: dict[str, list[tuple[Job, SlurmHandle]]] = {}
        for job, handle in self.pending:
            groups.setdefault(json.dumps(self._parameters(job), sort_keys=True), []).append((job, handle))
        self.pending = []
        for parameters, members in groups.items():
            self.executor.update_parameters(**json.loads(parameters))
            try:
                if len(members) == 1:
                    submitted = [self.executor.submit(run_in_job, members[0][0])]
                else:
                    with self.executor.batch():
                        submitted = [self.executor.submit(run_in_job, job) for job, _ in members]
            except (subprocess.SubprocessError, OSError, RuntimeError) as error:  # submitit's FailedJobError too
                message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                for job, handle in members:
                    handle.failure = message
                    note(job.log_path, f"sbatch failed: {message}")
                continue
            for (job, handle), slurm_job in zip(members, submitted, strict=True):
                handle.job_id = str(slurm_job.job_id)
                self.states[handle.job_id] = JobState(handle.job_id, "PENDING")
                record = SlurmJobRecord(
                    job_id=handle.job_id, name=self.name, submitted_at=time.time(), host=socket.gethostname()
                )
                record.write(job.run.folder / JOB_FILE)
                note(job.log_path, f"submitted Slurm job {handle.job_id}")

    def _parameters(self, job: Job) -> dict[str, Any]:
        resources = job.config.resources
        options = self.options
        additional = {**({"time": self.time} if self.time else {}), **options.sbatch_args()}
        parameters: dict[str, Any] = {
            "job_name": self.name,
            "partition": options.partition,
            "account": options.account,
            "qos": options.qos,
            "time": None,  # Slurm's format goes through `additional_parameters`; None: the partition's
            "cpus_per_task": job.cpus(),
            "gpus_per_node": resources.gpus if self.has_gpus else None,
            "mem": f"{math.ceil(resources.memory_gb * 1024)}M" if resources.memory_gb else None,
            "setup": list(options.setup),
            "additional_parameters": additional,
            "use_srun": False,  # one process: the job's exit is the experiment's exit
            "stderr_to_stdout": True,
        }
        return parameters

    def _earlier_job(self, job: Job) -> JobState | None:
        """The job an earlier (killed) runner submitted for this run, if Slurm still has it pending or running."""
        try:
            record = SlurmJobRecord.read(job.run.folder / JOB_FILE)
        except (OSError, ValueError):
            return None
        job_id, name = record.job_id, record.name
        state = job_states([job_id])[job_id]
        if not state.active or (name and state.name and state.name != name):
            return None
        return state

    def state(self, job_id: str) -> JobState:
        now = time.time()
        if now - self.refreshed >= REFRESH_SECONDS:
            self.refreshed = now
            active = [known for known, state in self.states.items() if state.active]
            for known, state in job_states(active).items():
                # Slurm may not answer for a job it just accepted (an array not yet registered) or
                # while the controller restarts: only a job unknown for a while has vanished.
                if state.state == "UNKNOWN" and known in self.cancelled:
                    state = replace(state, state="CANCELLED")  # ours, cancelled before its array was split
                elif state.state == "UNKNOWN" and now - self.unknown_since.setdefault(known, now) < UNKNOWN_GRACE:
                    continue
                self.unknown_since.pop(known, None)
                self.states[known] = state
        return self.states[job_id]

    def close(self) -> None:
        pass


def _partition_has_gpus(partition: str | None) -> bool:
    """Whether the partition's nodes offer GPUs (a `gpu` GRES): only then do jobs ask for resources.gpus."""
    command = ["sinfo", "--noheader", "--format=%G", *(["--partition", partition] if partition else [])]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "gpu" in output
