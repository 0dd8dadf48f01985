"""A real MLflow tracking server for the tracking tests: `mlflow server` on a loopback port with a SQLite store
and served artifacts, started and stopped by the tests (and started again on the same store)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sft.tracking.store import prepare_store

START_SECONDS = 120.0  # a loaded CI machine, and one whose cache has no empty store yet (sft.tracking.store)


class ServerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MlflowServer:
    """`mlflow server` over `folder/mlflow.db` and `folder/artifacts`; `uri` stays the same across restarts."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.store_uri = f"sqlite:///{self.folder / 'mlflow.db'}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        prepare_store(self.store_uri)  # a copy of the cached empty store: the server runs no migration
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--backend-store-uri", self.store_uri,
            "--artifacts-destination", str(self.folder / "artifacts"),
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        log = open(self.folder / "server.log", "a", encoding="utf-8")  # noqa: SIM115 (the server writes to it)
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.time() + START_SECONDS
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(f"mlflow server exited with {self.process.returncode}: {self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.3)
        self.stop()
        raise ServerUnavailable(f"mlflow server did not answer in {START_SECONDS:g} s: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.process = None

    def log_tail(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(encoding="utf-8")[-2000:] if path.exists() else ""
