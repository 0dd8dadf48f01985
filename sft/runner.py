"""Running a grid: every experiment and seed in a fresh Python process, one after another.

A fresh process per run is what guarantees that GPU memory and global state never leak from one
experiment into the next. A failed run is recorded in its `status.json` (exit code, duration, the end
of its log) and the grid goes on; the runner exits non-zero when any run failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sft.config import ExperimentConfig
from sft.experiment import RUNNER_LOG_ENV, Run, write_config
from sft.storage import atomic_write_json

LOG_TAIL_LINES = 20


@dataclass
class Outcome:
    run: Run
    ok: bool
    exit_code: int
    seconds: float


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])


def child_command(config_file: Path, run: Run) -> list[str]:
    return [
        sys.executable, "-m", "sft.cli", "run-experiment", str(config_file),
        "--name", run.name, "--random-seed", str(run.seed), "--results-path", str(run.results_path),
    ]  # fmt: skip


def run_one(config: ExperimentConfig, run: Run) -> Outcome:
    """Run one experiment/seed in a child process whose output goes to the run's run.log."""
    folder = run.folder
    folder.mkdir(parents=True, exist_ok=True)
    config_file = write_config(config, run)
    results_file = folder / "results.json"
    if results_file.exists():  # a rerun must not leave an older run's results looking current
        os.replace(results_file, folder / "results.previous.json")
    started = time.time()
    with open(folder / "run.log", "a", encoding="utf-8") as log_file:
        log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} run-experiment {run.name} seed {run.seed}\n")
        log_file.flush()
        process = subprocess.run(
            child_command(config_file, run),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, RUNNER_LOG_ENV: "1"},
            check=False,
        )
    seconds = time.time() - started
    ok = process.returncode == 0 and results_file.exists()
    status = {
        "experiment": run.name,
        "seed": run.seed,
        "state": "done" if ok else "failed",
        "exit_code": process.returncode,
        "duration_seconds": round(seconds, 3),
        "config_hash": config.config_hash(),
        "log": str(folder / "run.log"),
    }
    if not ok:
        status["log_tail"] = tail(folder / "run.log")
    atomic_write_json(folder / "status.json", status)
    return Outcome(run, ok, process.returncode, seconds)


def run_experiments(
    configs: dict[str, ExperimentConfig], results_path: str | Path, seeds: Sequence[int], console=None
) -> int:
    """Run every (experiment, seed), aggregate the results, and return the exit code (1 if any failed)."""
    from rich.console import Console

    from sft.report import aggregate

    console = console or Console(stderr=True)
    results_path = Path(results_path)
    results_path.mkdir(parents=True, exist_ok=True)
    plan = [Run(name, seed, results_path) for name in configs for seed in seeds]
    outcomes: list[Outcome] = []
    console.print(
        f"Running {len(plan)} run(s) ({len(configs)} experiment(s) x {len(seeds)} seed(s)) into {results_path}"
    )
    try:
        for index, run in enumerate(plan, 1):
            console.print(f"[{index}/{len(plan)}] {run.name} seed {run.seed} ...")
            outcome = run_one(configs[run.name], run)
            outcomes.append(outcome)
            verdict = "[green]done[/green]" if outcome.ok else f"[red]FAILED[/red] (exit {outcome.exit_code})"
            console.print(f"[{index}/{len(plan)}] {run.name} seed {run.seed}: {verdict} in {outcome.seconds:.1f} s")
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted; the running child was stopped. Aggregating what finished.[/yellow]")
        aggregate(results_path)
        return 130
    _, markdown_path = aggregate(results_path)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    console.print(f"{len(outcomes) - len(failed)} done, {len(failed)} failed. Report: {markdown_path}")
    for outcome in failed:
        console.print(f"  failed: {outcome.run.name} seed {outcome.run.seed}, see {outcome.run.folder / 'run.log'}")
    return 1 if failed else 0
