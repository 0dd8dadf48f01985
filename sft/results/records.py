"""The files sft processes hand each other, each one pydantic model with a `schema_version`: written and
read only through its model, so a reader never guesses at keys.

    results.json               `sft.results.run_record.ResultsRecord`      a finished run (written last)
    status.json                `sft.results.states.StatusRecord`           what the grid runner saw of a run
    ready.json                 `sft.results.adapters.ReadyRecord`          a shared adapter is complete
    slurm_job.json             `sft.runner.slurm_record.SlurmJobRecord`    the Slurm job that runs a run
    sft_export.json            `sft.serving.manifest.Manifest`             an export's manifest
    aggregated_results.json    `sft.report.document.AggregatedResults`     the report for pandas
    trial.json                 `sft.search.study.TrialRecord`              a search's trial (its run folder)
    search.json                `sft.search.study.SearchRecord`             a search's study and chosen values

`Record.read` takes a file of any version this sft knows: an older one is upgraded explicitly, one
step at a time, through the record's `UPGRADES` (version n's content -> version n + 1's); a version with
no upgrade is named as one this sft cannot read, and a newer version than the model's is an error that
says so (the file comes from a newer sft). A file without `schema_version` is the record's
`UNVERSIONED` version: what sft wrote before records carried one. Files keep the keys they always had,
so older sft versions and other tools still read them; `schema_version` comes first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from sft.results.files import atomic_write_json, read_json

R = TypeVar("R", bound="Record")
VERSION_KEY = "schema_version"


class RecordError(ValueError):
    """A record file that exists but cannot be used: not a JSON object, a version this sft cannot read,
    or content its model refuses. `messages` holds one line per problem, each naming the file."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


class Record(BaseModel):
    """A versioned file. Subclasses declare `schema_version: Literal[N] = N` (N, the version they write),
    `FILE` (the file name) and, once N > UNVERSIONED, one upgrade per older version they still read."""

    model_config = ConfigDict(extra="forbid")

    FILE: ClassVar[str]
    UNVERSIONED: ClassVar[int] = 0  # the version of a file that carries no schema_version
    # version n -> a function turning version n's content (a dict) into version n + 1's (ValueError: it cannot)
    UPGRADES: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}
    # what to do with a file of a version no upgrade reads (appended to the error)
    OLD_VERSION_HINT: ClassVar[str] = ""
    # keys present only when the writer set them (the file keeps the shape the writer chose)
    OMIT_UNSET: ClassVar[bool] = False
    # keys written only when not null: added for one task's files, so every other file keeps its shape
    OMIT_WHEN_NULL: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def version(cls) -> int:
        """The version this model writes: its `schema_version` default."""
        return int(cls.model_fields[VERSION_KEY].default)

    @classmethod
    def read(cls: type[R], path: str | Path, source: str | None = None) -> R:
        """The record in `path`. OSError when it cannot be opened, ValueError (json's) when it is not
        JSON, RecordError when its version or content cannot be read; its messages name the file as
        `source` (default: the path), so a report can name it relative to its results folder."""
        return cls.parse(read_json(path), source or str(path))

    @classmethod
    def parse(cls: type[R], data: Any, source: str) -> R:
        """The record of a file's JSON value `data` (`source` names the file in errors), upgraded to the
        current version."""
        if not isinstance(data, dict):
            raise RecordError([f"{source}: not a JSON object"])
        found = data.get(VERSION_KEY, cls.UNVERSIONED)
        current = cls.version()
        if isinstance(found, bool) or not isinstance(found, int):
            raise RecordError([f"{source}: {VERSION_KEY} {found!r} is not a version number"])
        if found > current:
            raise RecordError(
                [
                    f"{source}: {VERSION_KEY} {found} is newer than this sft reads ({cls.FILE} up to version "
                    f"{current}); it was written by a newer sft: upgrade sft to read it"
                ]
            )
        version, unversioned = found, VERSION_KEY not in data
        while version < current:
            upgrade = cls.UPGRADES.get(version)
            if upgrade is None:
                which = f"{version} (a file without {VERSION_KEY})" if unversioned and version == found else version
                readable = ", ".join(str(known) for known in sorted({*cls.UPGRADES, current}))
                raise RecordError(
                    [f"{source}: {cls.FILE} version {which} cannot be read by this sft, which "
                     f"reads versions {readable}{cls.OLD_VERSION_HINT}"]
                )  # fmt: skip
            try:
                data = upgrade({key: value for key, value in data.items() if key != VERSION_KEY})
            except ValueError as error:  # the upgrade found content the old version could not hold
                raise RecordError([f"{source}: {error}"]) from None
            version += 1
        try:
            return cls.model_validate({**data, VERSION_KEY: current})
        except ValidationError as error:
            raise RecordError(
                [f"{source}: {_location(problem)}{problem['msg']}" for problem in error.errors()]
            ) from None

    def content(self) -> dict[str, Any]:
        """The file's JSON content: `schema_version` first, then the fields in their declared order."""
        data = self.model_dump(mode="python", exclude_unset=self.OMIT_UNSET)
        data.pop(VERSION_KEY, None)
        data = {key: value for key, value in data.items() if value is not None or key not in self.OMIT_WHEN_NULL}
        return {VERSION_KEY: self.version(), **data}

    def to_json(self) -> str:
        """The file's text, as `write` writes it."""
        return json.dumps(self.content(), indent=2, ensure_ascii=False, default=str) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the record to `path` atomically (sft.results.files)."""
        return atomic_write_json(path, self.content())


def _location(problem: Any) -> str:
    where = ".".join(str(part) for part in problem.get("loc", ()))
    return f"{where}: " if where else ""
