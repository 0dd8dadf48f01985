"""What a tracked grid asks for (`TrackingOptions`, from `--track` and `--tracking-uri`) and where the default
store lives: a SQLite file in the results folder, which `mlflow ui --backend-store-uri sqlite:///<file>` opens,
with the artifacts beside it. The names are module constants so the runner can reserve them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sft.results.layout import TRACKING_STORE

TRACKERS = ("mlflow",)
STORE_FILE = TRACKING_STORE  # in the results folder root: the default tracking store (a reserved name)
TRACKING_FOLDER = "_tracking"  # in the results folder root: the grid's record and the default store's artifacts
ARTIFACTS_FOLDER = "artifacts"  # under TRACKING_FOLDER


@dataclass(frozen=True)
class TrackingOptions:
    """`--track` (the tracker's name), `--tracking-uri` (None: the SQLite store in the results folder) and
    `--tracking-experiment` (None: the results folder's name)."""

    tracker: str = "mlflow"
    uri: str | None = None
    experiment: str | None = None

    def problems(self) -> list[str]:
        if self.tracker not in TRACKERS:
            return [f"--track {self.tracker!r}: not a tracker sft knows; use {' or '.join(TRACKERS)}"]
        return []

    def resolved_uri(self, results_path: Path) -> str:
        """The tracking URI: the given one, else the SQLite store in the results folder (absolute, so every
        process and node that sees the folder finds it)."""
        return self.uri or f"sqlite:///{Path(results_path).resolve() / STORE_FILE}"

    def artifact_location(self, results_path: Path) -> str | None:
        """Where a new experiment keeps its artifacts: beside the default store; the server decides otherwise."""
        if self.uri:
            return None
        return (Path(results_path).resolve() / TRACKING_FOLDER / ARTIFACTS_FOLDER).as_uri()

    def experiment_name(self, results_path: Path) -> str:
        return self.experiment or Path(results_path).resolve().name
