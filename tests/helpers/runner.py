"""The grid runner as the runner tests start it: grids written to a folder, the real CLI in its own
process (with the fault hooks of `fault_hooks/` on its path), the processes it leaves, and the files
its experiments write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import REPO, classification_config, merge
from sft.config import parse_config
from sft.results.layout import Run

HOOKS = Path(__file__).resolve().parents[1] / "fault_hooks"


def fast_config(data: Path, model: Path) -> dict:
    return merge(classification_config(data, model), {"dataset": {"max_n_test": 4}})


def write_grid(folder: Path, configs: dict) -> Path:
    grid = folder / "grid.json"
    grid.write_text(json.dumps({"configs": configs}))
    return grid


def start_runner(
    grid: Path, results: Path, *args: str, faults: dict | None = None, marker: str = "", pause: dict | None = None
):
    """The runner in its own process; `marker` tags it and every process it starts (see `tagged`); `pause`
    stops the first process that reaches a point (see fault_hooks/sitecustomize.py)."""
    command = ["run-experiments", str(grid), "--results-path", str(results), "--no-check-data", *args]
    return start_cli(*command, faults=faults, marker=marker, pause=pause)


def start_cli(*args: str, faults: dict | None = None, marker: str = "", pause: dict | None = None):
    """`python -m sft.cli ARGS` in its own process, with the fault hooks on its path."""
    env = {**os.environ, "PYTHONPATH": f"{HOOKS}{os.pathsep}{REPO}", "SFT_TEST_MARK": marker}
    env["SFT_TEST_FAULTS"] = json.dumps(faults or {})
    env["SFT_TEST_PAUSE"] = json.dumps(pause or {})
    return subprocess.Popen(
        [sys.executable, "-m", "sft.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def tagged(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"SFT_TEST_MARK={marker}".encode() not in (entry / "environ").read_bytes():
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def status(results: Path, name: str, seed: int = 42) -> dict:
    return json.loads((Run(name, seed, results).folder / "status.json").read_text())


def finished_count(results: Path, name: str, seed: int = 42) -> int:
    """How many times the experiment reached its end (each run logs one 'Finished' line to run.log)."""
    log = Run(name, seed, results).folder / "run.log"
    return log.read_text().count(f"Finished {name} seed {seed}:") if log.exists() else 0


def configs(tmp_path: Path, **changes) -> dict:
    """Two valid experiments (never loaded by the sh executor); `changes[name]` merges into one."""
    base = classification_config(tmp_path / "data", tmp_path / "model")
    return {name: parse_config(merge(base, changes.get(name, {}))) for name in ("a", "b")}


def wait_for_pause(process: subprocess.Popen, marker: Path, what: str) -> None:
    """Wait until `process` (or one it started) stopped at its pause point (`marker` exists); it must still run."""
    wait_until(lambda: marker.exists() or process.poll() is not None, 240, what)
    assert process.poll() is None, process.communicate()[1][-3000:]


def wait_for_no_process(marker: str, what: str) -> None:
    wait_until(lambda: not tagged(marker), 20, what)
