"""The MLflow client behind short timeouts; with `sft.tracking.store`, the only module that imports mlflow (inside
its functions: the runner and the experiment process import this package before they know whether the grid is
tracked).

A tracker must never fail or slow an experiment: HTTP requests time out after a few seconds and are not
retried, and the first failure turns the `Tracker` off for the rest of the process with one warning. The
results folder keeps everything, and `aggregate --track` publishes what did not reach the tracker.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# MLflow reads these when it sends a request: seconds per request, retries after a failed one. A tracker that
# is down costs an experiment at most one timeout (connection refused: nothing).
HTTP_ENVIRONMENT = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",  # no usage reports from offline clusters (and no thread in a fork server)
}
# Set by the runner of a tracked grid for the processes it starts, to the tracking URI: a fork server then
# imports the client (and, for a database URI, the SQL store: about 4 s together) before it forks, rather than
# every experiment importing them again.
PRELOAD_ENV = "SFT_TRACKING_PRELOAD"


def preload_modules(uri: str) -> tuple[str, ...]:
    """What a process that will log to `uri` imports ahead (`PRELOAD_ENV`)."""
    client = ("mlflow.tracking", "mlflow.entities")
    if uri.startswith(("http:", "https:", "databricks")):
        return client
    return (*client, "mlflow.store.tracking.sqlalchemy_store")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Imports with the cyclic garbage collector off: the modules' objects live as long as the process, and the
    collections their creation triggers cost about a fifth of the import's CPU. Left off only by whoever
    turned it off first (another thread may be importing too)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def preloaded(uri: str) -> bool:
    """This process imported what logging to `uri` needs already (a fork server's child)."""
    return all(module in sys.modules for module in preload_modules(uri))


PARENT_TAG = "mlflow.parentRunId"  # MLflow's nested-run convention: the UI shows the child under its parent
BATCH = {"params": 100, "tags": 100, "metrics": 1000}  # what one log_batch call may carry


def configure_environment() -> None:
    """Short timeouts and no retries, unless the user set MLflow's variables."""
    for key, value in HTTP_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


class Tracker:
    """One tracking URI. Each call returns None instead of raising once the tracker failed."""

    def __init__(self, uri: str):
        self.uri = uri
        self.failure: str | None = None
        self._client: Any = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def client(self) -> Any:
        if self._client is None:
            configure_environment()
            with collector_paused():  # the first call imports the client and the store: seconds of CPU
                for module in preload_modules(self.uri):
                    importlib.import_module(module)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def call(self, what: str, function: Callable[..., T], *args: Any) -> T | None:
        """`function(client, *args)`, or None (with one warning) when the tracker fails or failed before."""
        if self.failure is not None:
            return None
        try:
            return function(self.client(), *args)
        except Exception as error:  # any failure of the tracker: the run goes on, the files keep the truth
            self.failure = f"{what}: {type(error).__name__}: {str(error)[:300]}"
            log.warning(
                "Tracking at %s is off for this process (%s); the results folder keeps everything and "
                "`sft aggregate RESULTS --track mlflow` publishes it later",
                self.uri, self.failure,
            )  # fmt: skip
            return None


# --- operations, each `function(client, ...)` for Tracker.call --------------------------------------------------


def experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of the experiment `name`, created when it does not exist (by another process too)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except Exception:  # created meanwhile by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def create_run(client: Any, experiment: str, name: str, tags: dict[str, str], parent: str | None = None) -> str:
    all_tags = {**tags, **({PARENT_TAG: parent} if parent else {})}
    return str(client.create_run(experiment, tags=all_tags, run_name=name).info.run_id)


def reopen(client: Any, run_id: str) -> str | None:
    """Mark a run running again (a resumed run, the parent of a resumed grid); its status before, or None when
    the run is gone (deleted in the tracker)."""
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == "deleted":
        return None
    client.update_run(run_id, status="RUNNING")
    return str(run.info.status)


def log_batch(
    client: Any,
    run_id: str,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    steps: list[tuple[str, float, int]] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Params, metrics (final ones at step 0), step metrics and tags in as few requests as MLflow allows."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    param_list = [Param(key, value) for key, value in (params or {}).items()]
    tag_list = [RunTag(key, value) for key, value in (tags or {}).items()]
    metric_list = [Metric(key, value, now, 0) for key, value in (metrics or {}).items()]
    metric_list += [Metric(key, value, now, step) for key, value, step in steps or []]
    while param_list or tag_list or metric_list:
        client.log_batch(
            run_id, metrics=metric_list[: BATCH["metrics"]], params=param_list[: BATCH["params"]],
            tags=tag_list[: BATCH["tags"]],
        )  # fmt: skip
        param_list, tag_list = param_list[BATCH["params"] :], tag_list[BATCH["tags"] :]
        metric_list = metric_list[BATCH["metrics"] :]


def logged_metrics(client: Any, run_id: str) -> set[str]:
    """The metric keys a run holds already (a publish that was cut short logs only the others)."""
    return set(client.get_run(run_id).data.metrics)


def log_files(client: Any, run_id: str, files: list[tuple[Path, str | None]]) -> None:
    """Each (file or folder, artifact folder); a file logged again replaces the one before."""
    for path, folder in files:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), folder)
        elif path.is_file():
            client.log_artifact(run_id, str(path), folder)


def end(client: Any, run_id: str, status: str) -> None:
    """FINISHED, FAILED or KILLED."""
    client.set_terminated(run_id, status=status)
