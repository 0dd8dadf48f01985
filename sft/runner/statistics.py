"""Each finished run's report statistics, prepared beside the grid runner's poll loop, not inside it.

The report at the end of a grid needs every run's resampled statistics (`sft.report.statistics.prepare_run`,
kept by `sft.report.cache`); preparing each run's as it finishes, while the others still run, makes that
report quick. Inside the poll loop they would hold it for as long as they take: no run would start, time
out or be seen finished meanwhile. So the loop hands each finished run to one worker process
(`python -m sft.runner.statistics RESULTS`, one folder per line on its stdin), which prepares them in
order; `close` waits until it has prepared every run handed to it, before the grid's final report.

A process rather than a thread: the runner starts its children with a pre-exec function, which is safe
only while the runner has no thread of its own, and the resampling gets a core of its own instead of
sharing the runner's interpreter.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from sft.report.statistics import prepare_run
from sft.results.layout import Run
from sft.results.logs import setup_logging
from sft.runner.processes import start_child


class StatisticsWorker:
    """The runner's side: start the worker, hand it finished runs without ever waiting on it, close it."""

    def __init__(self, results_path: Path):
        command = [sys.executable, "-m", "sft.runner.statistics", str(results_path)]
        # its log lines (a run whose statistics cannot be prepared) go where the runner's go
        self.process = start_child(command, stdout=subprocess.DEVNULL, stdin=subprocess.PIPE, stderr=None)
        assert self.process.stdin is not None  # piped above
        self.requests: IO[bytes] = self.process.stdin
        os.set_blocking(self.requests.fileno(), False)
        self.pending = b""
        self.handed = 0

    def submit(self, run: Run) -> None:
        """Queue a finished run, named as the report names it (`Run.relative`)."""
        self.pending += f"{run.relative}\n".encode()
        self.handed += 1
        self._write()

    def _write(self) -> None:
        """Write what the pipe takes now; the rest waits for the next call (the worker may lag behind)."""
        try:
            while self.pending:
                written = os.write(self.requests.fileno(), self.pending)
                self.pending = self.pending[written:]
        except BlockingIOError:
            pass
        except BrokenPipeError:  # the worker died: the report prepares what it finds missing itself
            self.pending = b""

    def close(self, wait: bool = True) -> None:
        """Wait until every run handed over is prepared; `wait=False` (or none handed over): stop the worker
        at once, the report prepares what is missing itself."""
        if not (wait and self.handed):
            self.process.kill()
        else:
            os.set_blocking(self.requests.fileno(), True)
            with contextlib.suppress(BrokenPipeError):
                while self.pending:
                    written = os.write(self.requests.fileno(), self.pending)
                    self.pending = self.pending[written:]
        with contextlib.suppress(BrokenPipeError):
            self.requests.close()
        self.process.wait()


def serve(results_path: Path) -> None:
    """The worker: prepare the run of each folder read from stdin, until stdin closes."""
    setup_logging()
    for line in sys.stdin:
        folder = line.strip()
        if folder:
            prepare_run(results_path, folder)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
