"""A new SQLite tracking store without running MLflow's schema migrations each time: a copy of an empty store
that MLflow's own `mlflow db upgrade` built once per MLflow version and schema revision, kept in a cache folder.

MLflow creates a SQLite store on its first open by running every schema migration since its first release
(1-7 s, mostly CPU and a few hundred synced writes: most of what tracking used to add to a short grid). The
empty store those migrations leave is the same file every time, so a new store is a copy of it, written under
a temporary name and linked into place (no process ever sees half a store). MLflow then finds every table at
the schema revision it expects, opens the copy as it opens any store it made, and adds its default experiment
(whose artifact location is the store's own) on that first open, as it does after migrating.

The folder is `$SFT_TRACKING_CACHE` when set (`off` disables the cache: MLflow migrates each new store), else
~/.cache/sft/tracking. Whatever goes wrong here (no cache folder, a failed build) leaves the store to MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from sft.tracking.client import HTTP_ENVIRONMENT, collector_paused

log = logging.getLogger(__name__)
ENV_VAR = "SFT_TRACKING_CACHE"
DEFAULT_FOLDER = Path.home() / ".cache" / "sft" / "tracking"
BUILD_SECONDS = 600  # `mlflow db upgrade` of an empty store: seconds on an idle machine, much more on a loaded one
SQLITE_PREFIX = "sqlite:///"


def cache_folder() -> Path | None:
    """The cache folder from the environment; None when the cache is turned off."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return DEFAULT_FOLDER
    return None if value.strip().lower() in ("", "off", "none", "0") else Path(value).expanduser()


def sqlite_file(uri: str) -> Path | None:
    """The file of a SQLite store's URI (`sqlite:///relative.db`, `sqlite:////absolute.db`); None for any other
    store, an in-memory database or a URI with options."""
    if not uri.startswith(SQLITE_PREFIX) or "?" in uri:
        return None
    path = uri[len(SQLITE_PREFIX) :]
    return Path(path) if path and path != ":memory:" else None


def schema() -> tuple[str, str]:
    """The MLflow version and the schema revision its migrations end at: an empty store is the same file for
    both (a development install may change the migrations without changing the version)."""
    with collector_paused():
        import mlflow
        from mlflow.store.db.utils import _get_latest_schema_revision  # what MLflow checks a store against on open

    return str(mlflow.__version__), str(_get_latest_schema_revision())


def schema_revision(path: Path) -> str | None:
    """The schema revision an MLflow store file is at (alembic's bookkeeping table), None when it has none."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def empty_store(folder: Path, version: str, revision: str) -> Path | None:
    """The cached empty store of MLflow `version` at schema `revision`, built by `mlflow db upgrade` (in a
    folder of its own, then renamed into place) when missing; None when it cannot be built."""
    path = folder / re.sub(r"[^A-Za-z0-9.+-]", "_", f"empty-{version}-{revision}.db")
    if path.is_file() and schema_revision(path) == revision:  # else a damaged file: built again
        return path
    folder.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=folder))
    try:
        store = building / "mlflow.db"
        command = [sys.executable, "-m", "mlflow", "db", "upgrade", f"{SQLITE_PREFIX}{store.resolve()}"]
        env = {**os.environ, **HTTP_ENVIRONMENT}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=BUILD_SECONDS, check=False)
        if done.returncode != 0 or schema_revision(store) != revision:
            log.warning("Tracking: could not build an empty MLflow store (%s)", done.stderr.strip()[-500:])
            return None
        os.replace(store, path)  # another grid that builds the same store at once writes the same file
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return path


def prepare_store(uri: str) -> bool:
    """Give a SQLite store that does not exist yet its tables: a copy of the cached empty store, linked into
    place once complete (a process that opens the store meanwhile finds none or all of it, and a store created
    meanwhile is kept). Whether it was copied."""
    target, folder = sqlite_file(uri), cache_folder()
    if target is None or folder is None or target.exists():
        return False
    try:
        source = empty_store(folder, *schema())
        if source is None:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"  # created as any new file (umask)
        try:
            shutil.copyfile(source, temporary)
            try:
                os.link(temporary, target)  # fails when the store was created meanwhile: a store is never replaced
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: a rename, unless the store appeared meanwhile
                if target.exists():
                    return False
                os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    except Exception as error:  # the cache is an optimization: MLflow creates the store itself instead
        log.warning("Tracking: no cached empty store (%s: %s); MLflow creates it", type(error).__name__, error)
        return False
    return True
