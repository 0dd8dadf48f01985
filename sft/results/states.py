"""The states of a run and `status.json`, the record the grid runner writes of each run and the report
reads (`StatusRecord`).

One enum for both sides, so the report recognizes exactly the states something writes. A run whose
`results.json` reads is done whatever its status says; `status.json` matters for the others.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from sft.results.records import Record


class RunState(str, Enum):
    RUNNING = "running"  # started (or queued by an executor); a runner holds its lock
    DONE = "done"  # results.json written with the config's hash
    FAILED = "failed"  # ended without results: an error, a signal, a timeout (status.json's reason says which)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGTERM of the runner; a rerun resumes it

    @classmethod
    def parse(cls, text: object) -> RunState | None:
        """The state named by `text`, or None for anything else (a status written by hand or by a newer sft)."""
        try:
            return cls(str(text))
        except ValueError:
            return None


# States after which a run has ended without results; the report lists them with their log tails.
FAILED_STATES = frozenset({RunState.FAILED})


Number = int | float  # a union keeps an integer an integer when the record is written again


class StatusRecord(Record):
    """`RESULTS/<experiment>/seed-<n>/status.json`: what the grid runner saw of a run, written by the runner
    alone, at each start and end. Keys the runner has nothing to say about are left out (a run found
    finished on resume records only its state and reason; `log_tail` comes with ended runs that have no
    results; each executor adds its own facts). The report reads it for the runs without results."""

    # An executor's handle adds its own facts (`Handle.details()`); those of the built-in executors are
    # declared below, and an executor registered from user code may add others, kept as they are.
    model_config = ConfigDict(extra="allow")

    FILE: ClassVar[str] = "status.json"
    UPGRADES: ClassVar[dict[int, Any]] = {0: dict}  # the first versioned form is the unversioned one
    OMIT_UNSET: ClassVar[bool] = True

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    experiment: str = Field(description="The experiment's name.")
    seed: int = Field(description="The run's random seed.")
    state: str = Field(
        description="running, done, failed or interrupted (`RunState`); the report counts any other value as "
        "not finished."
    )
    reason: str | None = Field(
        default=None, description="Why it ended so: an error, a signal, a timeout, a failed training."
    )
    exit_code: int | None = Field(
        default=None, description="The experiment process's exit code (negative: killed by a signal)."
    )
    signal: str | None = Field(default=None, description="The signal's name when a signal ended it.")
    duration_seconds: Number | None = Field(default=None, description="Seconds since the runner started it.")
    attempt: int | None = Field(
        default=None, description="1 for the first attempt, more with --retries; 0: never started."
    )
    pid: int | None = Field(default=None, description="The experiment process's id (local executors).")
    executor: str | None = Field(default=None, description="The executor that ran it.")
    gpus: list[str] | None = Field(default=None, description="The GPUs it ran on (--gpus); null on CPU slots.")
    started_at: str | None = Field(default=None, description="When the runner started it (ISO 8601, UTC).")
    launched_at: str | None = Field(default=None, description="When its process existed, after any queueing.")
    finished_at: str | None = Field(default=None, description="When it ended; null while running.")
    config_hash: str | None = Field(default=None, description="The hash of the config it ran.")
    log: str | None = Field(default=None, description="Its run.log.")
    ray_node: str | None = Field(default=None, description="Ray: the node it ran on.")
    slurm_job_id: str | None = Field(default=None, description="Slurm: the job (or array task) id.")
    slurm_state: str | None = Field(default=None, description="Slurm: the job's last state Slurm reported.")
    slurm_node: str | None = Field(default=None, description="Slurm: the node the job ran on.")
    slurm_restarts: int | None = Field(default=None, description="Slurm: how often Slurm restarted the job.")
    slurm_reason: str | None = Field(
        default=None,
        description="Slurm: its own Reason field for the job's last state (e.g. TimeLimit, NodeDown; BeginTime while "
        "a requeued job waits to start again).",
    )
    adopted: bool | None = Field(
        default=None, description="Slurm: the job was submitted by an earlier runner that was killed, and waited for."
    )
    log_tail: str | None = Field(default=None, description="The end of run.log, for runs that ended without results.")

    @property
    def run_state(self) -> RunState | None:
        """The state as a RunState; None for a state this version does not know."""
        return RunState.parse(self.state)
