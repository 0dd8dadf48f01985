"""SIGINT and SIGTERM at every moment of a grid's life, through the real command line: while the grid file
is expanded, while it is validated, while an experiment is being started, during a training, during the
final report (a SIGTERM just after the last experiment ended used to kill the runner with -15 instead of
130), while the fork server imports its libraries, and during an export. The fault hooks
(`fault_hooks/sitecustomize.py`) stop the first process that reaches the point, so each signal lands exactly
there. Every case exits 130 and leaves no process behind; what had finished is kept, nothing is half
written, and a rerun finishes every experiment exactly once. The cases run side by side."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest
from helpers import merge, training_sections
from helpers.runner import (
    fast_config,
    finished_count,
    start_cli,
    start_runner,
    status,
    wait_for_no_process,
    wait_for_pause,
    write_grid,
)

from sft.results.layout import RESERVED_NAMES, run_folders

pytestmark = [pytest.mark.slow, pytest.mark.faults]

# point -> the signals sent there. Both go to one handler, so both are sent where Python's own defaults
# differed (SIGINT an abort with exit 1, SIGTERM death by -15) and one where the cost is a training run.
CASES = {
    "expansion": (signal.SIGINT, signal.SIGTERM),
    "validation": (signal.SIGINT, signal.SIGTERM),
    "scheduling": (signal.SIGTERM,),
    "training": (signal.SIGTERM,),
    "report": (signal.SIGTERM,),  # the reported case: TERM just after the last experiment ended
    "forkserver-start": (signal.SIGINT, signal.SIGTERM),
}
SECONDS = {"scheduling": 3}  # the runner's own handler lets the claim go on: a short pause; else until killed


def test_a_signal_at_any_moment_exits_130_leaves_no_process_and_the_rerun_finishes_once(
    tmp_path, tiny_qwen, sentiment_data
):
    zero_shot = fast_config(sentiment_data, tiny_qwen)
    trained = merge(zero_shot, training_sections(shots=2))
    started = []
    for point, signums in CASES.items():
        for signum in signums:
            case = tmp_path / f"{point}-{signum.name}"
            case.mkdir()
            grid = write_grid(case, {"a": trained if point == "training" else zero_shot})
            pause = {"at": point, "marker": str(case / "paused"), "seconds": SECONDS.get(point, 120)}
            marker = uuid.uuid4().hex
            runner = start_runner(grid, case / "results", "--no-check-models", marker=marker, pause=pause)
            started.append((case, point, signum, grid, runner, marker))

    for case, point, signum, _, runner, _ in started:
        wait_for_pause(runner, case / "paused", f"the runner to reach {point}")
        runner.send_signal(signum)
    reruns = []
    for case, point, signum, grid, runner, marker in started:
        _, stderr = runner.communicate(timeout=120)
        assert runner.returncode == 130, (point, signum, stderr[-3000:])
        assert "Traceback" not in stderr, (point, stderr[-3000:])
        wait_for_no_process(marker, f"no process left after {point} {signum.name}")
        results = case / "results"
        assert not list(results.rglob("*.tmp")) and not list(results.rglob(".staging-*"))
        if point == "report":  # the experiment had finished: it is kept as done
            assert status(results, "a")["state"] == "done" and finished_count(results, "a") == 1
        elif point in ("scheduling", "training", "forkserver-start"):
            assert status(results, "a")["state"] == "interrupted" and finished_count(results, "a") == 0
        else:  # nothing ran
            assert not (results / "a").exists()
        if signum == signal.SIGTERM and point not in ("expansion", "validation"):  # those started nothing
            reruns.append((results, grid, start_runner(grid, results, "--no-check-models")))
    for results, _, rerun in reruns:
        _, stderr = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, stderr[-3000:]
        assert finished_count(results, "a") == 1 and status(results, "a")["state"] == "done"
        # the results folder holds the runs and nothing but the names it reserves (or `_`/`.` ones)
        runs = {folder.parent.name for folder in run_folders(results)}
        kept = {entry.name for entry in results.iterdir()} - runs
        assert {name for name in kept if not name.startswith(("_", "."))} <= RESERVED_NAMES, kept

    # an export of the finished run, interrupted while its files are written: 130 and no half-written folder
    run_folder = tmp_path / "report-SIGTERM" / "results" / "a" / "seed-42"
    exports = []
    for signum in (signal.SIGTERM,):
        out = tmp_path / f"export-{signum.name}"
        pause = {"at": "export", "marker": str(tmp_path / f"export-{signum.name}.paused"), "seconds": 120}
        exports.append((out, signum, pause, start_cli("export", str(run_folder), str(out), pause=pause)))
    for _, signum, pause, process in exports:
        wait_for_pause(process, Path(pause["marker"]), "the export to write its files")
        process.send_signal(signum)
    for out, _, _, process in exports:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr[-3000:]
        assert not out.exists() and not list(out.parent.glob(f".{out.name}*")), stderr[-2000:]
    assert json.loads((run_folder / "results.json").read_text())["experiment"] == "a"
