"""A full disk during a grid with few-shot runs that share an adapter, on a small tmpfs the test mounts
(skipped where mounting is not permitted): the disk fills while an adapter trains, so its saving fails.
That experiment fails with a reason naming the full disk and where, the runs waiting for its adapter fail
with it, the runner itself and the report survive the writes refused to them; nothing is half written
(results, predictions, adapters, the shared store, the statistics cache, status.json), the experiment that
had finished is untouched, and after space is freed a rerun finishes every experiment exactly once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import merge, training_sections
from helpers.runner import (
    fast_config,
    finished_count,
    start_runner,
    status,
    wait_for_no_process,
    wait_for_pause,
    write_grid,
)
from typer.testing import CliRunner

from sft.cli import app
from sft.results.adapters import READY, STORE

pytestmark = [pytest.mark.slow, pytest.mark.faults]

HEADROOM = 96 * 1024  # what the filler leaves: status files fit, an adapter does not


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {error}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave: int, filler: Path | None = None) -> Path:
    """Fill the filesystem at `mount` up to `leave` free bytes, with the file `filler`."""
    filler = filler or mount / ".filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    with open(filler, "r+b") as handle:
        handle.truncate(max(0, size - leave))
    return filler


def tree(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}  # fmt: skip


def test_a_full_disk_during_a_training_fails_that_run_cleanly_and_a_rerun_finishes_each_once(
    tmp_path, tiny_qwen, sentiment_data, small_disk
):
    zero_shot = fast_config(sentiment_data, tiny_qwen)
    trained = merge(zero_shot, training_sections(shots=2))
    configs = {"z": zero_shot, "a1": trained, "a2": merge(trained, {"inference": {"normalization": "mean"}})}
    grid = write_grid(tmp_path, configs)
    results = small_disk / "results"
    marker, resume = tmp_path / "training", tmp_path / "resume"
    pause = {"at": "training", "marker": str(marker), "until": str(resume), "seconds": 120}
    tag = uuid.uuid4().hex
    runner = start_runner(grid, results, "--no-check-models", marker=tag, pause=pause)
    wait_for_pause(runner, marker, "a1's training to begin")
    finished_before = tree(results / "z")
    assert status(results, "z")["state"] == "done"
    filler = fill(small_disk, HEADROOM)
    resume.touch()
    _, stderr = runner.communicate(timeout=300)
    assert runner.returncode == 1, stderr[-3000:]
    wait_for_no_process(tag, "no process left")

    where = f"disk full: no space left on the filesystem at {small_disk}"
    assert f"failed: a1 seed 42 ({where}" in stderr.replace("\n", ""), stderr[-3000:]
    assert status(results, "a1")["state"] == "failed" and status(results, "a1")["reason"].startswith(where)
    assert "its training" in status(results, "a2")["reason"]
    # nothing half-written: no temporary file, no staging folder, no adapter without its marker, no results
    assert not list(results.rglob("*.tmp")) and not list(results.rglob(".staging-*"))
    for adapter in (results / STORE).glob("*/seed-*"):
        assert not (adapter / "adapter").exists() or (adapter / READY).exists()
    for name in ("a1", "a2"):
        assert not (results / name / "seed-42" / "results.json").exists()
        assert not (results / name / "seed-42" / "predictions.jsonl").exists()
    for path in results.rglob("*.json"):
        json.loads(path.read_text())  # each record whole
    assert tree(results / "z") == finished_before  # the finished experiment untouched

    # the report on a disk with no byte left: one clear error, the report files as they were
    reports = {path.name: path.read_bytes() for path in results.glob("aggregated_results.*")}
    fill(small_disk, 0, filler.with_suffix(".more"))
    result = CliRunner().invoke(app, ["aggregate", str(results)])
    assert result.exit_code == 1 and "disk full: no space left on the filesystem at" in result.output, result.output
    assert {path.name: path.read_bytes() for path in results.glob("aggregated_results.*")} == reports
    assert not list(results.rglob("*.tmp"))

    filler.unlink()
    filler.with_suffix(".more").unlink()
    rerun = start_runner(grid, results, "--no-check-models", marker=tag)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    logs = "".join((results / name / "seed-42" / "run.log").read_text() for name in configs)
    assert logs.count("Saved the adapter") == 1  # the shared adapter trained once, after the failed try
    for name in configs:
        assert finished_count(results, name) == 1 and status(results, name)["state"] == "done"
    assert (results / "aggregated_results.md").exists() and any((results / "_statistics").iterdir())
    assert not list(results.rglob("*.tmp"))
