"""A fork server: a fresh process per experiment without paying the heavy imports each time.

The runner starts one server (`python -m sft.runner.forkserver RUNNER_PID`). It imports torch, transformers,
trl, peft, datasets and the sft modules an experiment uses, then waits for requests on stdin (one JSON
line per experiment). For each it forks a child which starts its own session, dies with the server,
restores default signal handlers, sends its output to the experiment's log, reseeds the global random
generators, runs `sft.experiment.run.run_experiment` and leaves with `os._exit`. The server reports the
child's pid and, later, its exit status as JSON lines on stdout.

Forking is safe here because the server never initializes CUDA and runs no tensor operation: torch
creates its OpenMP pool on the first parallel operation, which only children perform (each child
gets its own pool), and TOKENIZERS_PARALLELISM=false keeps the Rust tokenizers from starting a pool.
The few native threads the imports leave (pyarrow's jemalloc background thread, a torch helper) hold
no lock a child needs; their count is written to forkserver.log.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

import numpy

import sft.experiment.run  # run_experiment looked up at call time: a test's fault hooks may wrap it
from sft.config import ConfigError
from sft.config.grid import load_single
from sft.results.files import DISK_FULL_EXIT, disk_full, disk_full_reason
from sft.results.layout import FORKSERVER_LOG, Run
from sft.results.logs import setup_logging
from sft.runner.cpu_share import apply_in_child
from sft.runner.executors import ExecutorContext, Job, ProcessHandle, child_command, note
from sft.runner.processes import die_with_parent, signal_group, start_child
from sft.tracking.client import PRELOAD_ENV, collector_paused, preload_modules

PRELOAD = (
    "torch", "transformers", "trl", "peft", "datasets", "accelerate",
    "sft.experiment.run", "sft.config.grid", "sft.model.loading", "sft.model.initialization.apply",
    "sft.training.causal_lm", "sft.training.head", "sft.scoring.label_scoring", "sft.scoring.trie",
    "sft.scoring.label_sets", "sft.scoring.calibration", "sft.predictors.label_scoring",
    "sft.predictors.label_set_scoring", "sft.predictors.generation", "sft.predictors.head",
    "sft.evaluation.classification", "sft.evaluation.generation", "sft.evaluation.multilabel",
    # the metric functions import scikit-learn when first called: half a second in every child otherwise
    "sklearn.metrics",
)  # fmt: skip


# --- the server process ------------------------------------------------------------------------------------------


def preload() -> None:
    """Import what the experiments use, with the cyclic garbage collector off (`collector_paused`): what the
    imports make lives as long as the server."""
    uri = os.environ.get(PRELOAD_ENV)
    tracking = preload_modules(uri) if uri else ()  # a tracked grid's experiments log to mlflow
    with collector_paused():
        for module in (*PRELOAD, *tracking):
            importlib.import_module(module)


def run_child(request: dict[str, Any]) -> int:
    """Body of a forked child, after its output went to the log: what `sft.cli run-experiment` does."""
    import torch  # already imported by the server (PRELOAD), as are the libraries the experiment uses

    # A fresh process would start from fresh random state; the fork copied the server's.
    random.seed()
    numpy.random.seed()
    torch.seed()
    setup_logging()
    try:
        _, config = load_single(request["config_file"], "run-experiment")
        run = Run(request["name"], int(request["seed"]), Path(request["results_path"]), request["share_training"])
        sft.experiment.run.run_experiment(config, run)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    except Exception as error:
        if not disk_full(error):
            raise
        with contextlib.suppress(OSError):  # the log is on the full disk too
            traceback.print_exc()
            print(f"sft: {disk_full_reason(run.folder)}", file=sys.stderr, flush=True)
        return DISK_FULL_EXIT
    if (run.folder / "results.json").exists():  # a search's trial writes none (sft.search)
        print(f"Results written to {run.folder / 'results.json'}")
    return 0


def _child(request: dict[str, Any], server: int) -> None:
    code = 1
    try:
        os.setsid()
        die_with_parent(server)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.environ.update(request["env"])
        apply_in_child(request["env"])  # the pool size the server's libraries read at import is not ours
        code = run_child(request)
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(runner: int) -> None:
    """Fork one child per request line on stdin; report `{"id", "pid"}` then `{"id", "code"}` on stdout."""
    die_with_parent(runner)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what an interrupt stops
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    began = time.time()
    preload()
    # Keep the imported modules' objects out of the children's garbage collections: a collection
    # would touch (and so copy) every page of them in every child.
    gc.collect()
    gc.freeze()
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1
    print(f"fork server {os.getpid()}: imports took {time.time() - began:.1f} s; {threads} OS threads", file=sys.stderr)
    children: dict[int, Any] = {}
    pending = b""
    server = os.getpid()

    def report(message: dict[str, Any]) -> None:
        os.write(1, (json.dumps(message) + "\n").encode())

    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        if readable:
            chunk = os.read(0, 65536)
            if not chunk:  # the runner closed the pipe: stop whatever still runs, then leave
                for pid in children:
                    signal_group(pid, signal.SIGKILL)
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request, server)
                children[pid] = request["id"]
                report({"id": request["id"], "pid": pid})
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            report({"id": children.pop(pid), "code": os.waitstatus_to_exitcode(status)})


# --- the runner's side -------------------------------------------------------------------------------------------


class ServerHandle:
    def __init__(self, executor: ForkServerExecutor, request_id: int):
        self.executor, self.id = executor, request_id

    @property
    def pid(self) -> int | None:
        self.executor.pump()
        return self.executor.pids.get(self.id)

    def poll(self) -> int | None:
        self.executor.pump()
        return self.executor.codes.get(self.id)

    def started(self) -> bool:
        return self.pid is not None

    def signal(self, signum: int) -> None:
        """Signal the experiment's process group; one not forked yet (the server may still be importing)
        is abandoned instead: it ends now as killed by `signum`, and is killed if the fork comes later."""
        pid = self.pid
        if pid is None:
            self.executor.abandon(self.id, signum)
        else:
            signal_group(pid, signum)

    def end_reason(self) -> str:
        return ""

    def details(self) -> dict[str, Any]:
        return {}


class ForkServerExecutor:
    """Starts experiments as children of a fork server that has imported the heavy libraries once."""

    def __init__(self, context: ExecutorContext):
        log_path = Path(context.results_path) / FORKSERVER_LOG
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "sft.runner.forkserver", str(os.getpid())]
        with open(log_path, "a", encoding="utf-8") as log:
            self.server = start_child(
                command,
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE,
                stderr=log,
                env={"TOKENIZERS_PARALLELISM": "false"},
            )
        assert self.server.stdin is not None and self.server.stdout is not None  # both piped above
        self.requests: IO[bytes] = self.server.stdin
        self.replies: IO[bytes] = self.server.stdout
        os.set_blocking(self.replies.fileno(), False)
        self.next_id = 0
        self.pids: dict[int, int] = {}
        self.codes: dict[int, int] = {}
        self.abandoned: set[int] = set()  # stopped before their fork: killed as soon as their pid is known
        self.buffer = b""

    def start(self, job: Job) -> Any:
        if job.config.resources.launcher != "python":  # `accelerate launch` execs its own processes
            return ProcessHandle(child_command(job), job.log_path, job.env(), job.cores)
        request_id, self.next_id = self.next_id, self.next_id + 1
        request = {
            "id": request_id, "config_file": str(job.config_file), "name": job.run.name, "seed": job.run.seed,
            "results_path": str(job.run.results_path), "log": str(job.log_path), "env": job.env(),
            "share_training": job.run.share_training,
        }  # fmt: skip
        try:
            self.requests.write((json.dumps(request) + "\n").encode())
            self.requests.flush()
        except BrokenPipeError:
            self.codes[request_id] = 255
            note(job.log_path, "the fork server is gone; see forkserver.log")
        return ServerHandle(self, request_id)

    def pump(self) -> None:
        """Read what the server reported; if it died, every unfinished experiment failed with code 255."""
        with contextlib.suppress(BlockingIOError):
            while chunk := self.replies.read(65536):
                self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "pid" in message:
                self.pids[message["id"]] = message["pid"]
                if message["id"] in self.abandoned:
                    signal_group(message["pid"], signal.SIGKILL)
            else:
                self.codes[message["id"]] = message["code"]
        if self.server.poll() is not None:
            for request_id in range(self.next_id):
                self.codes.setdefault(request_id, 255)

    def abandon(self, request_id: int, signum: int) -> None:
        """End a request whose fork has not happened (an interrupt while the server imports)."""
        self.abandoned.add(request_id)
        self.codes.setdefault(request_id, -signum)

    def close(self) -> None:
        """Close the server's input (it stops what still runs and leaves); a server that does not read it
        (still importing) is killed, at once when every request has ended."""
        with contextlib.suppress(OSError):
            self.requests.close()
        self.pump()
        ended = all(request_id in self.codes for request_id in range(self.next_id))
        try:
            self.server.wait(timeout=1 if ended else 10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
