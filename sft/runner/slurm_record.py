"""`slurm_job.json`: the Slurm job that runs (or ran) a run, written by the `slurm` executor into the run
folder as it submits the job, so a runner started after a killed one waits for that job instead of
submitting the run again (`sft.runner.slurm_executor`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from sft.results.records import Record


class SlurmJobRecord(Record):
    """`RESULTS/<experiment>/seed-<n>/slurm_job.json`: the job submitted for the run. A rerun adopts the job
    while Slurm still has it pending or running under the same job name."""

    FILE: ClassVar[str] = "slurm_job.json"
    UPGRADES: ClassVar[dict[int, Any]] = {0: dict}  # the first versioned form is the unversioned one

    schema_version: Literal[1] = Field(default=1, description="The version of this file's format.")
    job_id: str = Field(description="Slurm's job id (`<array id>_<task>` for a job array task).")
    name: str | None = Field(
        description="The job name, `sft:<results folder name>`; a job of another name is not adopted."
    )
    submitted_at: float = Field(description="When it was submitted (seconds since the epoch).")
    host: str = Field(description="The host the runner submitted it from.")
