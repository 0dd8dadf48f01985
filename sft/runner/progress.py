"""What a running grid shows: a live panel (done, failed, running, skipped, ETA) on a terminal, one plain
line per event otherwise (logs, CI), and the `--dry-run` table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table

from sft.results.layout import Run
from sft.results.states import RunState

# "skipped" is the runner's decision not to run (finished, or locked by another runner), not a run state.
SKIPPED = "skipped"
STATE_STYLE = {
    RunState.DONE.value: "green",
    RunState.FAILED.value: "red",
    RunState.INTERRUPTED.value: "yellow",
    RunState.RUNNING.value: "blue",
    SKIPPED: "cyan",
}


def label(run: Run) -> str:
    return f"{run.name} seed {run.seed}"


class Progress:
    """Counts and ETA of a grid; a rich Live panel when the console is a terminal."""

    def __init__(self, console: Any, total: int, slots: int):
        self.console, self.total, self.slots = console, total, max(1, slots)
        self.counts = {RunState.DONE.value: 0, RunState.FAILED.value: 0, SKIPPED: 0, RunState.INTERRUPTED.value: 0}
        self.running: dict[Run, float] = {}
        self.durations: list[float] = []
        self.live = None
        if console.is_terminal:
            self.live = Live(self._panel(), console=console, refresh_per_second=2, transient=True)
            self.live.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def _finished(self) -> int:
        return sum(self.counts.values())

    def eta_seconds(self) -> float | None:
        """Mean duration of the finished experiments times the waves still to run."""
        if not self.durations:
            return None
        remaining = self.total - self._finished()
        return sum(self.durations) / len(self.durations) * remaining / self.slots

    def _panel(self) -> Any:
        eta = self.eta_seconds()
        table = Table.grid(padding=(0, 2))
        summary = ", ".join(f"{count} {state}" for state, count in self.counts.items() if count)
        eta_text = f"ETA {eta / 60:.1f} min" if eta is not None else "ETA -"
        table.add_row(f"[bold]{self._finished()}/{self.total}[/bold]", summary or "starting", eta_text)
        now = time.time()
        for run, started in self.running.items():
            table.add_row("[blue]running[/blue]", label(run), f"{now - started:.0f} s")
        return table

    def _event(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text)
            self.live.update(self._panel())
        else:
            self.console.print(text, highlight=False)

    def started(self, run: Run, detail: str = "") -> None:
        self.running[run] = time.time()
        self._event(f"{label(run)}: started{detail}")

    def finished(self, run: Run, state: str, seconds: float, reason: str = "") -> None:
        self.running.pop(run, None)
        self.counts[state] = self.counts.get(state, 0) + 1
        if state == RunState.DONE.value:
            self.durations.append(seconds)
        verdict = "FAILED" if state == RunState.FAILED.value else state
        style = STATE_STYLE.get(state, "white")
        suffix = f" ({reason})" if reason else ""
        outcome = f"[{style}]{verdict}[/{style}]{suffix}"
        self._event(f"[{self._finished()}/{self.total}] {label(run)}: {outcome} in {seconds:.1f} s")

    def retrying(self, run: Run, reason: str) -> None:
        self.running.pop(run, None)
        self._event(f"{label(run)}: [red]failed[/red] ({reason}); retrying")

    def skipped(self, run: Run, reason: str) -> None:
        self.counts[SKIPPED] += 1
        self._event(f"[{self._finished()}/{self.total}] {label(run)}: [cyan]skipped[/cyan] ({reason})")

    def set_aside(self, run: Run, reason: str, folder: Path) -> None:
        """Old results moved out of the way before a rerun (unreadable results.json, --force): say where."""
        self._event(f"{label(run)}: {reason}; the old files are in {folder}")

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(self._panel())


def print_plan(console: Any, rows: Sequence[tuple[Run, str, str]], adapters: dict[Run, str] | None = None) -> None:
    """The `--dry-run` table of evaluations: each experiment/seed, whether it would run, and why; with
    shared training, whether it trains its key's adapter or reuses it (`adapters`)."""
    table = Table(title="run-experiments --dry-run: evaluations")
    for column in ("experiment", "seed", "action", "why", *(["adapter"] if adapters else [])):
        table.add_column(column)
    for run, action, reason in rows:
        style = "green" if action == "run" else "cyan"
        role = [adapters.get(run, "")] if adapters else []
        table.add_row(run.name, str(run.seed), f"[{style}]{action}[/{style}]", reason, *role)
    console.print(table)
    would_run = sum(action == "run" for _, action, _ in rows)
    after = sum(action == "search" for _, action, _ in rows)
    waits = f", {after} would run after their search" if after else ""
    console.print(f"{would_run} would run{waits}, {len(rows) - would_run - after} would be skipped; nothing was run.")


def print_trainings(console: Any, trainings: Sequence[Any]) -> None:
    """The `--dry-run` table of trainings (`sft.runner.sharing.PlannedTraining`): each training key and
    seed the runs need, whether it would be trained (by which experiment) or reused from the store."""
    if not trainings:
        return
    table = Table(title="run-experiments --dry-run: trainings")
    for column in ("training key", "seed", "action", "by", "used by"):
        table.add_column(column)
    for training in trainings:
        style = "green" if training.action == "train" else "cyan"
        action = f"[{style}]{training.action}[/{style}]"
        users = ", ".join(training.users)
        table.add_row(training.adapter.key[:12], str(training.adapter.seed), action, training.by or "stored", users)
    console.print(table)
    trained = sum(training.action == "train" for training in trainings)
    console.print(f"{trained} training(s) would run, {len(trainings) - trained} stored adapter(s) would be reused.")
