"""The data of one experiment: its splits read the way its task keeps labels, the training shots of
its seed, and the test subset.

Every problem with the data (a missing split or column, an empty split, a label without training
examples) is found before any model is loaded, and reported all at once as a ConfigError.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.config import ConfigError, ExperimentConfig
from sft.data.splits import data_problems, load_splits, needs_train_split, validation_split_of
from sft.data.targets import with_target_fields
from sft.tasks import task_for
from sft.tasks.base import selection_problems
from sft.tasks.labels import members_by_label

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from sft.tasks.base import Task

__all__ = ["ExperimentData", "data_problems", "load_splits", "needs_train_split", "prepare_data", "sample_shots"]

log = logging.getLogger(__name__)

# The test subset chosen by max_n_test is the same for every seed, so experiments stay comparable.
TEST_SUBSET_SEED = 0
# So is a validation split carved out of the training split (`training.validation_from_train`).
VALIDATION_CARVE_SEED = 0


@dataclass(frozen=True)
class ExperimentData:
    """The splits one experiment uses, with labels as its task keeps them (strings; ordered lists)."""

    train: Dataset | None
    shots: Dataset | None  # the sampled training examples (None for zero-shot)
    test: Dataset
    validation: Dataset | None
    labels: list[str] | None  # classification and multilabel
    # the split `validation` was read from (dataset.validation_split, or the dataset's own one)
    validation_name: str | None = None
    # indices of `icl_pool` from which in-context examples are drawn: one group per label, or one in all
    icl_groups: list[np.ndarray] = field(default_factory=list)
    # the JSON Schema every answer fits (a structured task: configured, or inferred from the training targets)
    schema: dict[str, Any] | None = None

    @property
    def icl_pool(self) -> Dataset | None:
        """Where in-context examples come from: the sampled shots when there are any (so a few-shot
        experiment sees no labelled data beyond its shots), else the whole training split."""
        return self.shots if self.shots is not None else self.train


def prepare_data(
    config: ExperimentConfig, seed: int, splits: DatasetDict | None = None, task: Task | None = None
) -> ExperimentData:
    """Load, check and cut the data of one experiment: training shots for `seed`, the test subset."""
    task = task or task_for(config)
    splits = with_target_fields(config, load_splits(config.dataset) if splits is None else splits)
    problems = data_problems(config, splits) + selection_problems(config, task)
    if problems:
        raise ConfigError(problems)
    dataset, output = config.dataset, config.prompting.output_column

    def split_or_none(name: str | None) -> Dataset | None:
        if name is None or name not in splits:
            return None
        return task.read_split(splits[name], output, dataset.labels)

    train = split_or_none(dataset.train_split) if needs_train_split(config) else None
    test = split_or_none(dataset.test_split)
    validation_name = validation_split_of(config, splits)
    if validation_name is not None and validation_name != dataset.validation_split:
        log.info(
            "No dataset.validation_split: tuning inference.thresholds %r on the dataset's %r split.",
            config.inference.thresholds,
            validation_name,
        )
    validation = split_or_none(validation_name)
    test = fixed_subset(test, dataset.max_n_test)
    labels = task.label_set([test] if train is None else [test, train], output, dataset.labels)
    schema = task.output_schema(config, [test] if train is None else [train])
    carved = config.training.validation_from_train if config.training is not None else None
    if carved is not None and train is not None:
        train, validation = carve_validation(train, output, labels, carved, task)
    shots = sample_shots(train, output, labels, dataset.shots, seed) if config.trains else None
    pool = shots if shots is not None else train
    groups = task.example_groups(pool[output], labels) if pool is not None else []
    return ExperimentData(
        train=train,
        shots=shots,
        test=test,
        validation=validation,
        labels=labels,
        validation_name=validation_name,
        icl_groups=groups,
        schema=schema,
    )


def fixed_subset(split: Dataset, limit: int | None) -> Dataset:
    """At most `limit` examples of `split`, the same ones for every seed (and for the test subset of
    `max_n_test` and the evaluation subset of `training.eval_examples` alike)."""
    if limit is None or limit >= len(split):
        return split
    return split.shuffle(seed=TEST_SUBSET_SEED).select(range(limit))


def carve_validation(
    train: Dataset, column: str, labels: list[str] | None, count: int, task: Task
) -> tuple[Dataset, Dataset]:
    """(rest of the training split, validation split of about `count` examples), the same for every seed.

    Stratified over the task's example groups (a group per label; one group for generation): each group
    gives its share of `count`, at least one example. Shots are then sampled from the rest only, so no
    validation example is ever trained on.
    """
    if count >= len(train):
        raise ConfigError(
            [
                f"training.validation_from_train: {count} examples asked but the training split has only "
                f"{len(train)}; carve fewer"
            ]
        )
    rng = np.random.default_rng(VALIDATION_CARVE_SEED)
    groups = [group for group in task.example_groups(train[column], labels) if len(group)]
    total = sum(len(group) for group in groups)
    chosen: dict[int, None] = {}  # ordered set: a multilabel example is in several groups, taken once
    for group in groups:
        share = max(1, round(count * len(group) / total))
        fresh = [int(index) for index in rng.permutation(group) if int(index) not in chosen]
        chosen.update(dict.fromkeys(fresh[:share]))
    validation = list(chosen)[:count]
    kept = set(validation)
    rest = [index for index in range(len(train)) if index not in kept]
    log.info("Carved %d validation examples out of the %d training examples", len(validation), len(train))
    return train.select(rest), train.select(sorted(validation))


# -- shots -----------------------------------------------------------------------------------------------


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
