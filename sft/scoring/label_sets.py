"""Label-set scoring: the probability that each label is in a generated label sequence.

The answer of a multilabel model is a label sequence in a fixed order, so label L is in it when it
comes first, or when it comes right after an earlier label M. Both are scored with the model's own
likelihoods (`label_logprobs`):

    P(L in answer) = P(answer starts with L) + sum over M before L of P(starts with "M<sep>L")

which is exact for answers of up to two labels (the vast majority in practice) and a lower bound
otherwise. Each label gets its own probability (they are not renormalized against each other), which
the task's thresholds then cut. It costs K + K(K-1)/2 label continuations per prompt for K labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sft.scoring.label_scoring import label_logprobs


def label_set_probabilities(
    model: Any, tokenizer: Any, prompts: list[str], labels: list[str], separator: str, batch_size: int = 8
) -> np.ndarray:
    """P(label in the answer) for every prompt and label, shape (prompts, labels); see the module docstring."""
    first = label_logprobs(model, tokenizer, prompts, labels, batch_size).double().exp().numpy()
    probabilities = first.copy()
    for m, label in enumerate(labels[:-1]):
        # after M, "<sep>L" for the labels L that come later in the label order (the separator's own
        # probability included, so first * following is P(answer starts with "M<sep>L"))
        continued = [prompt + label for prompt in prompts]
        after = [separator + later for later in labels[m + 1 :]]
        following = label_logprobs(model, tokenizer, continued, after, batch_size).double().exp().numpy()
        probabilities[:, m + 1 :] += first[:, m : m + 1] * following
    return np.clip(probabilities, 0.0, 1.0)
