"""Loading the dataset splits, checking them against the config, and sampling the training shots.

Every problem with the data (a missing split or column, an empty split, a label without training
examples) is found here, before any model is loaded, and reported all at once as a ConfigError.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sft.config import ConfigError, DatasetConfig, ExperimentConfig

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

log = logging.getLogger(__name__)

DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
# The test subset chosen by max_n_test is the same for every seed, so experiments stay comparable.
TEST_SUBSET_SEED = 0


@dataclass
class ExperimentData:
    """The splits one experiment uses, with labels already turned into strings."""

    train: Dataset | None
    shots: Dataset | None  # the sampled training examples (None for zero-shot)
    test: Dataset
    validation: Dataset | None
    labels: list[str] | None  # classification and multilabel
    # multilabel: the thresholds the predictor used (tuned on validation), reported in results.json
    thresholds: dict[str, float] | None = None

    @property
    def icl_pool(self) -> Dataset | None:
        """Where in-context examples come from: the sampled shots when there are any (so a few-shot
        experiment sees no labelled data beyond its shots), else the whole training split."""
        return self.shots if self.shots is not None else self.train


def load_splits(config: DatasetConfig) -> DatasetDict:
    """Load every split of `config.path`: a save_to_disk folder, a data file, a data folder or a hub id."""
    import datasets

    datasets.disable_progress_bars()  # one bar per split would drown the run log
    path = Path(config.path)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_file() and path.suffix in DATA_FILE_BUILDERS:
            loaded = datasets.load_dataset(DATA_FILE_BUILDERS[path.suffix], data_files=str(path), **config.args)
        else:
            loaded = datasets.load_dataset(config.path, **config.args)
    except Exception as error:  # datasets raises many types; the user needs the path and the cause
        raise ConfigError([f"dataset.path: cannot load {config.path!r}: {type(error).__name__}: {error}"]) from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def needs_train_split(config: ExperimentConfig) -> bool:
    """Training needs it for shots; inference for in-context examples and for labelled calibration examples."""
    labelled_calibration = config.inference.calibration_args.calibration_fn == "adjustable_batch"
    return config.trains or config.inference.icl_examples > 0 or labelled_calibration


def data_problems(config: ExperimentConfig, splits: DatasetDict) -> list[str]:
    """Everything wrong with the data for this config, one message per problem."""
    dataset, prompting = config.dataset, config.prompting
    problems = []
    wanted = {"dataset.test_split": dataset.test_split}
    if needs_train_split(config):
        wanted["dataset.train_split"] = dataset.train_split
    if dataset.validation_split:
        wanted["dataset.validation_split"] = dataset.validation_split
    columns = [*prompting.input_columns, prompting.output_column]
    labelled = {}  # the wanted splits whose labels can be checked
    for key, split in wanted.items():
        if split not in splits:
            problems.append(f"{key}: split {split!r} not found in {dataset.path!r}; it has {sorted(splits)}")
            continue
        if prompting.output_column in splits[split].column_names:
            labelled[key] = split
        if len(splits[split]) == 0:
            problems.append(f"{key}: split {split!r} of {dataset.path!r} is empty")
        missing = [column for column in columns if column not in splits[split].column_names]
        if missing:
            problems.append(
                f"prompting: column(s) {missing} not in split {split!r}; its columns are {splits[split].column_names}"
            )
    if dataset.task_type == "generation" or not labelled:
        return problems

    # Label checks run even when other problems were found, so one pass reports everything.
    if dataset.task_type == "multilabel":
        from sft.multilabel import label_list_problems, label_lists

        for split in labelled.values():
            problems += label_list_problems(splits[split], prompting.output_column, split)
        if any(message.startswith("prompting.output_column") for message in problems):
            return problems
        seen = {key: set().union(*label_lists(splits[s], prompting.output_column)) for key, s in labelled.items()}
    else:
        seen = {key: set(label_strings(splits[split], prompting.output_column)) for key, split in labelled.items()}
    if dataset.labels is not None:
        for key, values in seen.items():
            unknown = sorted(values - set(dataset.labels))
            if unknown:
                problems.append(
                    f"dataset.labels: split {wanted[key]!r} has labels {unknown} that are not in {dataset.labels}"
                )
    labels = dataset.labels or sorted(set().union(*seen.values()))
    if len(labels) < 2 and len(labelled) == len(wanted):
        problems.append(f"dataset: classification needs at least two labels; found {labels}")
    if "dataset.train_split" in seen:
        empty = [label for label in labels if label not in seen["dataset.train_split"]]
        if empty:
            problems.append(
                f"dataset.shots: label(s) {empty} have no example in split {dataset.train_split!r}, so they cannot "
                "be trained on or shown in context; remove them from dataset.labels or use a richer training split"
            )
    return problems


def label_strings(split: Dataset, column: str) -> list[str]:
    """The labels of a split as strings (ClassLabel ids become their names)."""
    from datasets import ClassLabel

    feature = split.features.get(column)
    values = split[column]
    if isinstance(feature, ClassLabel):
        return [feature.int2str(int(value)) for value in values]
    return [str(value) for value in values]


def _with_string_labels(split: Dataset, column: str) -> Dataset:
    from datasets import Value

    if split.features.get(column) == Value("string"):
        return split
    values = label_strings(split, column)
    return split.remove_columns(column).add_column(column, values)


def prepare_data(config: ExperimentConfig, seed: int, splits: DatasetDict | None = None) -> ExperimentData:
    """Load, check and cut the data of one experiment: training shots for `seed`, the test subset."""
    splits = load_splits(config.dataset) if splits is None else splits
    problems = data_problems(config, splits)
    if problems:
        raise ConfigError(problems)
    dataset, output = config.dataset, config.prompting.output_column

    def split_or_none(name: str | None) -> Dataset | None:
        if name is None or name not in splits:
            return None
        return _with_string_labels(splits[name], output) if dataset.task_type == "classification" else splits[name]

    if dataset.task_type == "multilabel":
        from sft.multilabel import with_ordered_labels

        split_or_none = with_ordered_labels(split_or_none, output, dataset.labels)  # type: ignore[assignment]

    train = split_or_none(dataset.train_split) if needs_train_split(config) else None
    test = split_or_none(dataset.test_split)
    validation = split_or_none(dataset.validation_split)
    if dataset.max_n_test is not None and dataset.max_n_test < len(test):
        test = test.shuffle(seed=TEST_SUBSET_SEED).select(range(dataset.max_n_test))
    labels = None
    if dataset.task_type == "classification":
        present = set(test[output]) | (set(train[output]) if train is not None else set())
        labels = list(dataset.labels) if dataset.labels else sorted(present)
    elif dataset.task_type == "multilabel":
        present = set().union(*test[output], *(train[output] if train is not None else []))
        labels = list(dataset.labels) if dataset.labels else sorted(present)
    shots = sample_shots(train, output, labels, dataset.shots, seed) if config.trains else None
    return ExperimentData(train=train, shots=shots, test=test, validation=validation, labels=labels)


def sample_shots(train: Dataset, column: str, labels: list[str] | None, shots: int, seed: int) -> Dataset:
    """Sample training examples without replacement, deterministically for `seed`.

    Classification takes `shots` examples of every label (all of them, with a warning, when a label has
    fewer); multilabel takes `shots` more examples containing each label, in label order, so every label
    appears; generation takes `shots` examples in all.
    """
    rng = np.random.default_rng(seed)
    if labels is None:
        count = min(shots, len(train))
        if count < shots:
            log.warning("Asked for %d shots but the training split has only %d examples; using all.", shots, count)
        chosen = rng.choice(len(train), size=count, replace=False)
    else:
        from sft.multilabel import members_by_label

        chosen_parts = []
        taken: set[int] = set()  # a multilabel example counts for each of its labels but is taken once
        for label, members in members_by_label(train[column], labels).items():
            candidates = np.array([index for index in members if index not in taken], dtype=int)
            wanted = shots - (len(members) - len(candidates))  # examples already taken count for this label
            if wanted <= 0:
                continue
            if len(candidates) < wanted:
                log.warning(
                    "Label %r has %d training examples, fewer than %d shots; using all of them.",
                    label,
                    len(members),
                    shots,
                )
            chosen_parts.append(rng.choice(candidates, size=min(wanted, len(candidates)), replace=False))
            taken.update(chosen_parts[-1].tolist())
        chosen = rng.permutation(np.concatenate(chosen_parts))
    return train.select(chosen.tolist())
