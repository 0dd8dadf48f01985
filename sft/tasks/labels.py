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


def blank_label_problems(splits: dict[str, Sequence[Any]], names: dict[str, str], column: str) -> list[str]:
    """Null, empty and whitespace-only labels, counted per split (config key -> the column's values; a value
    is one label or a list of labels). They cannot be scored or trained on, so they are refused up front."""
    problems = []
    for key, values in splits.items():
        null, blank = [], []
        for row, value in enumerate(values):
            for label in value if isinstance(value, list) else [value]:
                if label is None:
                    null.append(row)
                elif isinstance(label, str) and not label.strip():
                    blank.append(row)
        if null or blank:
            found = [
                f"{len(rows)} {kind} label(s) (rows {_first_rows(rows)})"
                for kind, rows in (("null", null), ("empty or whitespace-only", blank))
                if rows
            ]
            problems.append(
                f"prompting.output_column: split {names[key]!r} has {' and '.join(found)} in column {column!r}; "
                "give every example a label or remove those rows"
            )
    return problems


def _first_rows(rows: list[int]) -> str:
    return ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")


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
