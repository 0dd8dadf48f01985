"""Loading every split of a dataset (a save_to_disk folder, a data file, a data folder or a hub id) and
checking the splits against a config before any model loads: splits, columns, and (through the task)
labels. Every problem is reported, one message each, so a grid is fixed in one pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from sft.config import ConfigError, DatasetConfig, ExperimentConfig
from sft.tasks import task_for

if TYPE_CHECKING:
    from datasets import DatasetDict

DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
# A .tsv file is read by the csv builder with a tab delimiter (dataset.args can still override it).
DATA_FILE_ARGS = {".tsv": {"sep": "\t"}}
TEXT_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv")


def data_file_problems(path: Path) -> list[str]:
    """Empty data files and broken JSON Lines, each named by file (and line): pyarrow's own messages name
    neither ("Instruction 'test' corresponds to no data!", "JSON parse error ... in row 1")."""
    files = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.is_file()) if path.is_dir() else []
    problems = []
    for file in files:
        if file.suffix not in TEXT_DATA_SUFFIXES:
            continue
        if file.stat().st_size == 0 or (file.stat().st_size < 4096 and not file.read_bytes().strip()):
            problems.append(
                f"dataset.path: {file} is empty, so split {file.stem!r} has no examples; fill it or remove the file"
            )
        elif file.suffix == ".jsonl":
            problems += _jsonl_problems(file)
    return problems


def _jsonl_problems(file: Path) -> list[str]:
    """The first line of a JSON Lines file that is not one JSON object (one message per file)."""
    with open(file, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                return [f"dataset.path: {file}:{number}: not valid JSON ({error.msg}, column {error.colno}); fix or "
                        "remove that line"]  # fmt: skip
            if not isinstance(value, dict):
                return [f"dataset.path: {file}:{number}: each line must be one JSON object, got {type(value).__name__}"]
    return []


def load_splits(config: DatasetConfig) -> DatasetDict:
    """Load every split of `config.path`: a save_to_disk folder, a data file, a data folder or a hub id."""
    import datasets

    datasets.disable_progress_bars()  # one bar per split would drown the run log
    path = Path(config.path)
    problems = data_file_problems(path)
    if problems:  # found by reading the files ourselves: named by file and line, not by pyarrow's offsets
        raise ConfigError(problems)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_file() and path.suffix in DATA_FILE_BUILDERS:
            args = {**DATA_FILE_ARGS.get(path.suffix, {}), **config.args}
            loaded = datasets.load_dataset(DATA_FILE_BUILDERS[path.suffix], data_files=str(path), **args)
        else:
            loaded = datasets.load_dataset(config.path, **config.args)
    except Exception as error:  # datasets raises many types; the user needs the path and the cause
        cause = f"{type(error).__name__}: {error}"
        if error.__cause__ is not None:  # DatasetGenerationError hides the real cause there
            cause += f" ({type(error.__cause__).__name__}: {error.__cause__})"
        raise ConfigError([f"dataset.path: cannot load {config.path!r}: {cause}"]) from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


# -- checks against the config ---------------------------------------------------------------------------


def needs_train_split(config: ExperimentConfig) -> bool:
    """Training needs it for shots; inference for in-context examples and for labelled calibration examples."""
    labelled_calibration = config.inference.calibration_args.calibration_fn == "adjustable_batch"
    return (
        config.trains
        or config.inference.icl_examples > 0
        or labelled_calibration
        or task_for(config).reads_train_split(config)
    )


# Split names a dataset's validation split goes by, in the order one is picked when thresholds must be
# tuned and the config names none.
VALIDATION_SPLIT_NAMES = ("validation", "dev", "val")


def tunes_thresholds(config: ExperimentConfig) -> bool:
    """Whether the experiment's task tunes thresholds on a validation split (the task says)."""
    return task_for(config).tunes_thresholds(config.inference)


def validation_split_of(config: ExperimentConfig, splits: DatasetDict) -> str | None:
    """The validation split the experiment reads: `dataset.validation_split`, else (when its task tunes
    thresholds) the dataset's own split called validation, dev or val, else None."""
    if config.dataset.validation_split or not tunes_thresholds(config):
        return config.dataset.validation_split
    return next((name for name in VALIDATION_SPLIT_NAMES if name in splits), None)


def _validation_problem(config: ExperimentConfig, splits: DatasetDict) -> list[str]:
    """Tuned thresholds with no validation split to tune them on: refuse rather than silently use 0.5."""
    if not tunes_thresholds(config) or validation_split_of(config, splits) is not None:
        return []
    mode = config.inference.thresholds
    return [
        f"dataset.validation_split: inference.thresholds {mode!r} are tuned on a validation split, but none is "
        f"set and {config.dataset.path!r} has no split called {' / '.join(VALIDATION_SPLIT_NAMES)} (it has "
        f"{sorted(splits)}); set dataset.validation_split to one of its splits, or give fixed thresholds, "
        "e.g. inference.thresholds: 0.5"
    ]


def data_problems(config: ExperimentConfig, splits: DatasetDict) -> list[str]:
    """Everything wrong with the data for this config, one message per problem."""
    dataset, prompting = config.dataset, config.prompting
    problems = []
    wanted = {"dataset.test_split": dataset.test_split}
    if needs_train_split(config):
        wanted["dataset.train_split"] = dataset.train_split
    validation = validation_split_of(config, splits)
    if validation:
        wanted["dataset.validation_split"] = validation
    problems += _validation_problem(config, splits)
    columns = [*prompting.input_columns, prompting.output_column]
    labelled = {}  # the wanted splits whose labels can be checked
    for key, split in wanted.items():
        if split not in splits:
            problems.append(f"{key}: split {split!r} not found in {dataset.path!r}; it has {sorted(splits)}")
            continue
        if prompting.output_column in splits[split].column_names:
            labelled[key] = splits[split]
        if len(splits[split]) == 0:
            problems.append(f"{key}: split {split!r} of {dataset.path!r} is empty")
        missing = [column for column in columns if column not in splits[split].column_names]
        if missing:
            problems.append(
                f"prompting: column(s) {missing} not in split {split!r}; its columns are {splits[split].column_names}"
            )
    cluster = config.evaluation.cluster_column
    test = splits.get(dataset.test_split)
    if cluster and test is not None and cluster not in test.column_names:
        problems.append(
            f"evaluation.cluster_column: column {cluster!r} not in split {dataset.test_split!r}; its columns are "
            f"{test.column_names}; name one of them or leave it unset"
        )
    # Label checks run even when other problems were found, so one pass reports everything.
    if labelled:
        problems += task_for(config).label_problems(labelled, wanted, config, complete=len(labelled) == len(wanted))
    return problems
