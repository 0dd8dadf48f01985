"""sft.results.files: atomic writes leave either the old file or the new one, never a partial or temporary file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sft.results.files import (
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    disk_full,
    disk_full_reason,
    read_jsonl,
)


def test_atomic_write_json_writes_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out" / "results.json"
    data = {"metric": 0.5, "text": "größe", "path": Path("a/b")}
    assert atomic_write_json(target, data) == target
    assert json.loads(target.read_text(encoding="utf-8")) == {"metric": 0.5, "text": "größe", "path": "a/b"}
    atomic_write_json(target, {"metric": 0.75})
    assert json.loads(target.read_text(encoding="utf-8")) == {"metric": 0.75}
    assert os.listdir(target.parent) == ["results.json"]


def test_atomic_write_jsonl_round_trips(tmp_path):
    rows = [{"a": 1, "b": "ü"}, {"a": 2, "b": None}]
    path = atomic_write_jsonl(tmp_path / "rows.jsonl", rows)
    assert read_jsonl(path) == rows
    assert os.listdir(tmp_path) == ["rows.jsonl"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, monkeypatch, failing):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"old": True})
    before = target.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_json(target, {"new": True, "rows": list(range(10_000))})
    monkeypatch.undo()

    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["results.json"]


def test_unserialisable_data_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"old": True})
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError):
        atomic_write_json(target, circular)
    assert json.loads(target.read_text(encoding="utf-8")) == {"old": True}
    assert os.listdir(tmp_path) == ["results.json"]


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    """A KeyboardInterrupt during the write (not only an OSError) must not leave a partial target."""
    target = tmp_path / "log.txt"
    atomic_write_text(target, "old\n")
    real_fsync = os.fsync

    def interrupted(fd):
        real_fsync(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["log.txt"]


@pytest.mark.faults
def test_a_full_disk_is_told_from_other_errors_however_a_library_wraps_it(tmp_path):
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise RuntimeError("saving the adapter failed") from error
    except RuntimeError as wrapped:
        assert disk_full(wrapped)
    # safetensors words it after Rust's error kind
    assert disk_full(Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "x" })'))
    assert not disk_full(OSError(errno.EACCES, "Permission denied")) and not disk_full(ValueError("bad"))
    reason = disk_full_reason(tmp_path / "not" / "yet")
    assert reason.startswith("disk full: no space left on the filesystem at /") and "MiB free now" in reason
