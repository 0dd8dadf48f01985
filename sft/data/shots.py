"""Sampling the training examples of a few-shot run, deterministically for its seed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from sft.data.labels import members_by_label

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)


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
