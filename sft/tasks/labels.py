"""What every task shares about output values: their text, the examples carrying each label, and the
label-set checks that depend only on which labels each split holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def as_text(value: Any) -> str:
    """An input or output value as text (None is empty)."""
    return "" if value is None else str(value)


def members_by_label(values: Sequence[Any], labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Indices of the examples carrying each label; a value is one label or a list of labels."""
    members: dict[str, list[int]] = {label: [] for label in labels}
    for index, value in enumerate(values):
        for label in value if isinstance(value, list) else [value]:
            if label in members:
                members[label].append(index)
    return {label: np.array(indices, dtype=int) for label, indices in members.items()}


def label_set_problems(
    seen: dict[str, set[str]],
    split_names: dict[str, str],
    configured: list[str] | None,
    train_key: str,
    complete: bool,
) -> list[str]:
    """Problems with the labels found in the splits, each split given as config key -> its labels.

    `configured` is `dataset.labels`; `complete` says whether every wanted split could be read (the
    two-label check needs them all); `train_key` names the training split's entry, whose labels must
    cover the label set so every label can be trained on and shown in context.
    """
    problems = []
    if configured is not None:
        for key, values in seen.items():
            unknown = sorted(values - set(configured))
            if unknown:
                problems.append(
                    f"dataset.labels: split {split_names[key]!r} has labels {unknown} that are not in {configured}"
                )
    labels = configured or sorted(set().union(*seen.values()))
    if len(labels) < 2 and complete:
        problems.append(f"dataset: classification needs at least two labels; found {labels}")
    if train_key in seen:
        empty = [label for label in labels if label not in seen[train_key]]
        if empty:
            problems.append(
                f"dataset.shots: label(s) {empty} have no example in split {split_names[train_key]!r}, so they "
                "cannot be trained on or shown in context; remove them from dataset.labels or use a richer "
                "training split"
            )
    return problems
