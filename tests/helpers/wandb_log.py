"""The W&B tests' client (`wandb_client`: from `build/test-wandb`, see tests/wandb_requirements.txt), and what a W&B
offline run holds, read from its `run-<id>.wandb` file: the run record (project, group, name), the history rows
and the summary. W&B ships no reader in Python; the file is a LevelDB-style log (a 7-byte header,
32 KiB blocks, each record a 7-byte header of checksum, length and type, then its bytes, split across blocks
as FIRST, MIDDLE, LAST) of `wandb_internal_pb2.Record` messages."""

from __future__ import annotations

import importlib
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import REPO

WANDB_SITE = REPO / "build" / "test-wandb"  # README.md's test command installs the client there
INSTALL = "pip install --target build/test-wandb -r tests/wandb_requirements.txt"

BLOCK = 32 * 1024
HEADER = b":W&B"
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_client() -> Any:
    """The `wandb` module, its folder appended to this process's path (after the virtualenv's packages, which
    keep their own versions of what wandb shares with them). Fails, saying how to install it, when neither the
    folder nor the environment has it."""
    if str(WANDB_SITE) not in sys.path:
        sys.path.append(str(WANDB_SITE))
    try:
        return importlib.import_module("wandb")
    except ImportError as error:
        raise AssertionError(f"the W&B tests need wandb: {INSTALL} ({error})") from error


@dataclass
class OfflineRun:
    project: str = ""
    group: str = ""
    name: str = ""
    job_type: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def _payloads(data: bytes) -> list[bytes]:
    assert data.startswith(HEADER), "not a W&B log"
    position, pending, found = 7, b"", []
    while position + RECORD_HEADER <= len(data):
        room = BLOCK - position % BLOCK
        if room < RECORD_HEADER:  # the block's tail is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + RECORD_HEADER])
        position += RECORD_HEADER
        if kind == 0:
            break
        pending += data[position : position + length]
        position += length
        if kind in (FULL, LAST):
            found.append(pending)
            pending = b""
    return found


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def read_offline_run(folder: Path) -> OfflineRun:
    """The run in a W&B `offline-run-*` folder."""
    from wandb.proto import wandb_internal_pb2

    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun()
    for payload in _payloads(log.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.project, run.group = record.run.project, record.run.run_group
            run.name, run.job_type = record.run.display_name, record.run.job_type
        elif kind == "history":
            run.history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(item): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "config":
            run.config.update({_key(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run
