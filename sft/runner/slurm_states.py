"""What Slurm says about a job, read from Slurm itself: `sacct` where accounting runs, else `scontrol`.

The runner never guesses how a job ended from the experiment's output: Slurm's job state tells a
crash (FAILED), a cancellation, a time limit, a node failure, a preemption or an out-of-memory kill
apart, and its ExitCode (`exit:signal`) gives the exit code or the signal. `SLURM_STATES` is the one
table from Slurm's states to what the runner records; a state Slurm adds later counts as still active,
so the runner waits rather than declaring a live job dead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

# Slurm state -> why the job ended, as status.json's reason says it ('' for a normal end, where the exit
# code speaks); None while the job is pending, running or about to run again.
SLURM_STATES: dict[str, str | None] = {
    "PENDING": None,
    "CONFIGURING": None,
    "RUNNING": None,
    "COMPLETING": None,  # ended, but Slurm is still cleaning up: its final state follows
    "SUSPENDED": None,
    "REQUEUED": None,
    "REQUEUE_HOLD": None,
    "REQUEUE_FED": None,
    "RESIZING": None,
    "SIGNALING": None,
    "STAGE_OUT": None,
    "COMPLETED": "",
    "FAILED": "",  # the exit code or signal says how
    "CANCELLED": "cancelled in Slurm",
    "TIMEOUT": "Slurm time limit reached",
    "NODE_FAIL": "node failure",
    "PREEMPTED": "preempted",
    "OUT_OF_MEMORY": "out of memory (Slurm)",
    "BOOT_FAIL": "node boot failure",
    "DEADLINE": "Slurm deadline reached",
    "SPECIAL_EXIT": "special exit (job held)",
}
VANISHED = "job unknown to Slurm (purged from the controller and no accounting)"


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # Slurm's, e.g. RUNNING, TIMEOUT; UNKNOWN when Slurm no longer knows the job
    exit_code: int | None = None  # the script's exit code, or -N when signal N ended it
    restarts: int = 0  # times Slurm requeued it (preemption, node failure with --requeue)
    node: str = ""
    reason: str = ""
    name: str = ""  # Slurm's Reason field (why pending, or e.g. NonZeroExitCode)

    @property
    def active(self) -> bool:
        return self.state != "UNKNOWN" and SLURM_STATES.get(self.state) is None

    @property
    def started(self) -> bool:
        return self.state not in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")

    def end_reason(self) -> str:
        """Why the job ended, when its state says more than its exit code ('' for COMPLETED/FAILED)."""
        if self.state == "UNKNOWN":
            return VANISHED
        why = SLURM_STATES.get(self.state) or ""
        return f"{why} ({self.state})" if why else ""

    def code(self) -> int:
        """The exit code the runner records: Slurm's, else 255 when Slurm gives none."""
        if self.state == "COMPLETED":
            return 0
        return self.exit_code or 255


def parse_exit_code(text: str) -> int | None:
    """Slurm's `exit:signal` as an exit code, or -N for signal N: `3:0` -> 3, `0:9` (the batch shell
    itself killed) -> -9, `137:0` -> -9 (the batch shell's report of its command killed by SIGKILL; the
    experiment's own exit codes stay below 128)."""
    try:
        code, _, signum = text.partition(":")
        if signum and int(signum):
            return -int(signum)
        return -(int(code) - 128) if 128 < int(code) < 128 + 65 else int(code)
    except ValueError:
        return None


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol show job -o ID` (one line of Key=Value pairs) as a dict; values hold no spaces except
    in the last fields, which are not read here."""
    fields = {}
    for part in text.split():
        key, sep, value = part.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def from_scontrol(job_id: str, fields: dict[str, str]) -> JobState:
    return JobState(
        job_id=job_id,
        state=fields.get("JobState", "UNKNOWN"),
        exit_code=parse_exit_code(fields.get("ExitCode", "")),
        restarts=int(fields.get("Restarts", "0") or 0),
        node="" if fields.get("NodeList") in (None, "(null)") else fields["NodeList"],
        reason=fields.get("Reason", ""),
        name=fields.get("JobName", ""),
    )


def from_sacct(line: str) -> JobState:
    """One `sacct -X -n -P -o JobIDRaw,State,ExitCode,NodeList,Reason,JobName` line (State may read
    'CANCELLED by 0')."""
    job_id, state, exit_code, node, reason, name = (line.split("|", 5) + [""] * 6)[:6]
    state = state.split()[0] if state else "UNKNOWN"
    return JobState(job_id, state, parse_exit_code(exit_code), 0, node, reason, name)


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def job_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """The state of each job: scontrol while the controller holds it (MinJobAge after its end), else
    sacct when accounting runs, else UNKNOWN."""
    job_ids = list(job_ids)
    states: dict[str, JobState] = {}
    for job_id in job_ids:
        result = _run("scontrol", "show", "job", "-o", job_id)
        if result.returncode == 0 and "JobState=" in result.stdout:
            states[job_id] = from_scontrol(job_id, parse_scontrol(result.stdout))
    missing = [job_id for job_id in job_ids if job_id not in states]
    if missing:
        result = _run(
            "sacct", "-X", "-n", "-P", "-o", "JobIDRaw,State,ExitCode,NodeList,Reason,JobName", "-j", ",".join(missing)
        )
        if result.returncode == 0:
            for line in result.stdout.splitlines():
                if line.strip():
                    state = from_sacct(line)
                    states[state.job_id] = state
    for job_id in missing:
        states.setdefault(job_id, JobState(job_id, "UNKNOWN"))
    return states


def cancel(job_id: str) -> None:
    """`scancel`: Slurm sends SIGTERM to every process of the job, then SIGKILL after KillWait."""
    _run("scancel", job_id)
