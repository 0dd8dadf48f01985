"""Where results live: `RESULTS/<experiment>/seed-<n>/`, names that stay inside the results folder,
and the one rule that turns free text (dataset paths, model ids, metric names) into file names.

`Run` is the one place a run folder's path is built (`Run.folder`, `Run.relative`) or parsed
(`Run.from_folder`, `run_folders`); `seed_folder`/`seed_of_folder` the one place the `seed-<n>`
name is, for the shared adapter store's folders too.

A run folder holds `config.json` (the resolved config and its hash), `adapter/` (when trained without
sharing; shared adapters live in `RESULTS/_adapters/`, see `sft.results.adapters`),
`predictions.jsonl`, `results.json` (written last: its presence means the run finished), `run.log`,
`tensorboard/` and `wandb/` (TensorBoard event files and W&B's offline runs, when
`training.trainer_args.report_to` asks for them) and, under the grid runner, `status.json` and `.lock` (and
`tracking.json` under a tracked grid, see `sft.tracking.records`).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.results.files import atomic_write_text

TENSORBOARD_FOLDER = "tensorboard"  # in a run folder: the trainer's TensorBoard event files
WANDB_FOLDER = "wandb"  # in a run folder: W&B's own folder of the trainer's runs (offline: `offline-run-*`)

# Experiment names become folder names: keep them to one portable path component.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+@-]{0,199}$")


# Every name the runner and the report keep directly in the results folder is named here, and their writers
# import it from here: no experiment may be called so, or its run folder would collide with that file, and a
# new file added here is reserved with it. (Names starting with `_` or `.`, such as the shared adapter store,
# the report's caches and plots or submitit's folder, cannot be experiment names at all.)
REPORT_FILES = ("aggregated_results.json", "aggregated_results.csv", "aggregated_results.md")  # sft.report.aggregate
FORKSERVER_LOG = "forkserver.log"  # the fork server's own output (sft.runner.forkserver)
TRACKING_STORE = "mlflow.db"  # the default MLflow store of a tracked grid (sft.tracking.settings)
RESERVED_NAMES = frozenset(name.lower() for name in (*REPORT_FILES, FORKSERVER_LOG, TRACKING_STORE))


def reserved(name: str) -> bool:
    """Whether `name` (any case: case-insensitive filesystems) is a file the results folder keeps for itself,
    or a name no experiment can take (starting with `_` or `.`)."""
    return name.lower() in RESERVED_NAMES or name.startswith(("_", "."))


def check_name(name: str) -> str | None:
    """Return why `name` cannot be an experiment folder name, or None when it can."""
    if not NAME_PATTERN.match(name) or ".." in name:
        return (
            f"experiment name {name!r} is not a safe folder name: use letters, digits and . _ - = , + @ "
            "(no slashes, no '..', at most 200 characters, starting with a letter or digit)"
        )
    if reserved(name):
        return (
            f"experiment name {name!r} is reserved: the results folder keeps a file of its own under that name "
            f"(reserved: {', '.join(sorted(RESERVED_NAMES))}); rename the experiment"
        )
    return None


def results_folder_problems(results_path: str | Path) -> list[str]:
    """Why results cannot be written under `results_path` (checked before anything runs), or nothing.
    The folder need not exist: its nearest existing ancestor must then be a folder where one can be made.
    Permission bits do not say it (root passes every `access` check, yet cannot write to a read-only
    filesystem or create folders under /sys or /proc), so the check makes and removes a hidden folder there:
    what a run does first."""
    path = Path(results_path)
    existing = path
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    if _exists(existing) and not existing.is_dir():
        where = "is a file" if existing == path else f"is under the file {existing}"
        return [f"--results-path {path}: {where}; give a folder"]
    fix = "give a folder you can write to"
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY
        why = "is on a read-only filesystem" if read_only else "is not writable"
        return [f"--results-path {path}: the folder {existing} {why}; {fix}"]
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    too_long = [part for part in path.relative_to(existing).parts if len(os.fsencode(part)) > limit]
    if too_long:
        return [f"--results-path {path}: the name {too_long[0][:40]!r}... is longer than {limit} bytes; {fix}"]
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sft-write-check-", dir=existing))
    except OSError as error:
        why = error.strerror or type(error).__name__
        return [f"--results-path {path}: cannot create anything in {existing} ({why}); {fix}"]
    return []


def _exists(path: Path) -> bool:
    """`path.exists()`, False too where the path cannot even be looked up (a name too long)."""
    try:
        return path.exists()
    except OSError:
        return False


SEED_PREFIX = "seed-"
_SEED_FOLDER = re.compile(rf"^{SEED_PREFIX}(-?(?:0|[1-9][0-9]*))$")  # as seed_folder writes it, nothing else


def seed_folder(seed: int) -> str:
    """The name of a seed's folder: `seed-<n>`."""
    return f"{SEED_PREFIX}{seed}"


def seed_of_folder(name: str) -> int | None:
    """The seed a `seed-<n>` folder name stands for; None for any other name."""
    found = _SEED_FOLDER.match(name)
    return int(found.group(1)) if found else None


def run_dir(results_path: str | Path, name: str, seed: int) -> Path:
    """The folder of one experiment and seed, guaranteed to stay inside `results_path`."""
    problem = check_name(name)
    if problem:
        raise ValueError(problem)
    root = Path(results_path).resolve()
    folder = (root / name / seed_folder(seed)).resolve()
    if root not in folder.parents:
        raise ValueError(f"experiment {name!r} would escape the results folder {root}")
    return folder


@dataclass(frozen=True)
class Run:
    """Where one experiment/seed lives. `share_training`: its adapter is the shared one of its training
    key and seed (`sft.results.adapters`), trained by the first run that needs it; False trains its own
    into `adapter_folder` (`--no-share-training`)."""

    name: str
    seed: int
    results_path: Path
    share_training: bool = True

    @property
    def folder(self) -> Path:
        return run_dir(self.results_path, self.name, self.seed)

    @property
    def adapter_folder(self) -> Path:
        """This run's own adapter (trained without sharing)."""
        return self.folder / "adapter"

    @property
    def relative(self) -> str:
        """The run folder relative to the results folder, `<experiment>/seed-<n>` (POSIX), whether the
        results path was given relative or absolute: how the report names a run."""
        return f"{self.name}/{seed_folder(self.seed)}"

    @classmethod
    def from_folder(cls, folder: str | Path, share_training: bool = True) -> Run:
        """The Run whose folder is `folder`, a `RESULTS/<experiment>/seed-<n>` folder (relative to the
        working directory or absolute); ValueError naming the expected shape for any other folder. The
        names are those of the path as given (a symlinked experiment folder keeps its own name)."""
        path = Path(os.path.abspath(folder))
        seed = seed_of_folder(path.name)
        problem = check_name(path.parent.name) if seed is not None else None
        if seed is None or problem:
            raise ValueError(f"{path}: not a run folder; give RESULTS/<experiment>/{SEED_PREFIX}<n>")
        return cls(path.parent.name, seed, path.parent.parent, share_training)


def run_folders(results_path: str | Path) -> list[Path]:
    """The run folders directly under `results_path` (`<experiment>/seed-<n>`, as found there: relative
    when it is), sorted. Folders whose experiment part starts with `_` or `.` hold no runs (the shared
    adapter store, the report's caches and plots); anything deeper (older results set aside) is not a run."""
    return sorted(
        folder
        for folder in Path(results_path).glob(f"*/{SEED_PREFIX}*")
        if folder.is_dir()
        and not folder.parent.name.startswith(("_", "."))
        and seed_of_folder(folder.name) is not None
        and check_name(folder.parent.name) is None
    )


def write_config(config: Any, run: Run) -> Path:
    """The resolved config (an ExperimentConfig), every default filled in; itself a valid input for every
    command."""
    return atomic_write_text(run.folder / "config.json", config.model_dump_json(indent=2) + "\n")


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe form of `text`: runs of characters other than letters, digits and `._-` become
    `_`, runs of dots one dot, cut to `limit`, no leading or trailing `._-`. Grid names derived from
    configs go through it, so it must not change: those names are run folders."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    return re.sub(r"\.{2,}", ".", cleaned)[:limit].strip("._-")


def last_path_part(text: str) -> str:
    """The last component of a path or hub id (`org/model` -> `model`), or `text` when it has none."""
    parts = [piece for piece in re.split(r"[/\\]", text) if piece not in ("", ".", "..")]
    return parts[-1] if parts else text
