"""A new SQLite store is a copy of the cached empty store MLflow migrated once (sft.tracking.store): MLflow opens
the copy without migrating it, and it is the store MLflow makes itself, table for table. On such a local store
a fork server's child (the client preloaded) opens its run at once, and a failed open never fails the run."""

from __future__ import annotations

import importlib
import logging
import sqlite3
from pathlib import Path

import pytest
from helpers import classification_config

from sft.config import parse_config
from sft.results.layout import Run
from sft.results.logs import RUNNER_LOG_ENV
from sft.tracking.child import start_child, tracked
from sft.tracking.client import preload_modules
from sft.tracking.publish import open_grid
from sft.tracking.records import RunTrackingRecord, read_run_record
from sft.tracking.settings import TrackingOptions
from sft.tracking.store import ENV_VAR, cache_folder, prepare_store, schema_revision, sqlite_file


def test_only_a_sqlite_file_uri_names_a_store_file():
    assert sqlite_file("sqlite:////abs/mlflow.db") == Path("/abs/mlflow.db")
    assert sqlite_file("sqlite:///relative.db") == Path("relative.db")
    for uri in (
        "http://127.0.0.1:5000",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///a.db?mode=ro",
        "postgresql://h/db",
    ):
        assert sqlite_file(uri) is None, uri


def test_the_cache_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert cache_folder() == tmp_path
    monkeypatch.setenv(ENV_VAR, "off")
    assert cache_folder() is None
    assert not prepare_store(f"sqlite:///{tmp_path / 'new.db'}")  # no cache: MLflow creates the store
    monkeypatch.delenv(ENV_VAR)
    assert cache_folder() == Path.home() / ".cache" / "sft" / "tracking"


def test_an_existing_store_is_never_replaced(tmp_path):
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"kept")
    assert not prepare_store(f"sqlite:///{store}") and store.read_bytes() == b"kept"
    assert not prepare_store("http://127.0.0.1:5000")


class Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def schema_of(path: Path) -> set[tuple]:
    """Each table, index and trigger with its statement's clauses as a set: a migration that rebuilds a table
    (alembic's batch mode) writes its named constraints in an order that changes from process to process
    (string hashing), which says nothing about the schema."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        return {(kind, name, table, clauses(sql)) for kind, name, table, sql in rows}


def clauses(sql: str | None) -> frozenset[str] | None:
    return None if sql is None else frozenset(line.strip().rstrip(",").strip() for line in sql.splitlines())


def opened(path: Path, artifacts: Path) -> tuple[list[str], list]:
    """MLflow's messages while it opens the store (its migrations announce themselves), and its experiments."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    messages = Messages()
    logger = logging.getLogger("mlflow.store.db.utils")
    logger.addHandler(messages)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        store = SqlAlchemyStore(f"sqlite:///{path}", artifacts.as_uri())
    finally:
        logger.removeHandler(messages)
        logger.setLevel(level)
    experiments = [(e.experiment_id, e.name, e.artifact_location) for e in store.search_experiments()]
    store.engine.dispose()
    return messages.messages, experiments


@pytest.mark.slow
def test_mlflow_opens_a_copied_store_without_migrating_and_it_is_the_store_mlflow_makes(tmp_path):
    pytest.importorskip("mlflow", reason="the tracking tests need mlflow (requirements.txt)")
    from mlflow.tracking import MlflowClient

    copied, made = tmp_path / "copied" / "mlflow.db", tmp_path / "made" / "mlflow.db"
    assert prepare_store(f"sqlite:///{copied}")
    before = schema_of(copied)
    copied_messages, copied_experiments = opened(copied, tmp_path / "copied" / "artifacts")
    made.parent.mkdir()
    made_messages, made_experiments = opened(made, tmp_path / "made" / "artifacts")

    assert any("Creating initial MLflow database tables" in message for message in made_messages)
    assert copied_messages == []  # no migration ran: every table was there at the schema revision MLflow expects
    assert schema_of(copied) == before == schema_of(made)  # tables, indexes, triggers: the same statements
    assert schema_revision(copied) == schema_revision(made) is not None
    # MLflow's default experiment, added on the first open with the store's own artifact location
    assert copied_experiments == [("0", "Default", (tmp_path / "copied" / "artifacts" / "0").as_uri())]
    assert made_experiments == [("0", "Default", (tmp_path / "made" / "artifacts" / "0").as_uri())]

    client = MlflowClient(f"sqlite:///{copied}")  # and it works as a store
    run = client.create_run(client.create_experiment("grid"))
    client.log_metric(run.info.run_id, "accuracy", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.5}


@pytest.mark.slow
def test_a_preloaded_child_opens_at_once_and_a_failed_open_never_fails_its_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the tracking tests need mlflow (requirements.txt)")
    for module in preload_modules(TrackingOptions().resolved_uri(tmp_path)):  # what a fork server imports ahead
        importlib.import_module(module)
    config = parse_config(classification_config("data", "model"))
    assert open_grid(tmp_path, TrackingOptions(), {"zero": config}, active=True) is not None
    monkeypatch.setenv(RUNNER_LOG_ENV, "1")  # a process the grid runner started
    run = Run("zero", 1, tmp_path)
    run.folder.mkdir(parents=True)
    child = start_child(config, run)
    assert child is not None and child.thread is None  # a local store and a preloaded client: opened at once
    assert child.record is not None and read_run_record(run.folder) == child.record

    broken = Run("zero", 2, tmp_path)
    (broken.folder / RunTrackingRecord.FILE).mkdir(parents=True)  # the run's record cannot be written
    with tracked(config, broken):
        finished = True  # the run went on, and its end raised nothing
    assert finished
