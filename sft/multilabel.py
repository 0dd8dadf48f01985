"""Multi-label classification: label lists in the data, an independent probability per label, and
thresholds tuned on the validation split that turn those probabilities into label sets.

Data: the output column holds a list of label names; `sft.data` keeps each list in label order, so the
generative training target is `prompting.label_separator.join(labels)` (e.g. "joy, neutral").

Generative scoring (`label_set_probabilities`): the answer is a label sequence in a fixed order, so label
L is in it when it comes first, or when it comes right after an earlier label M. We score both with the
trained model's own likelihoods:

    P(L in answer) = P(answer starts with L) + sum over M before L of P(starts with "M<sep>L")

which is exact for answers of up to two labels (the vast majority in practice) and a lower bound
otherwise. Each label gets its own probability (they are not renormalized against each other), which
the thresholds then cut. It costs K + K(K-1)/2 label continuations per prompt for K labels.

Head mode (`sft.head`) gives independent sigmoid probabilities directly.

Thresholds (`inference.thresholds`): "global" picks one threshold maximizing micro-F1 on the
validation split, "per_label" one per label maximizing that label's F1; a number is used as is. A
label is predicted when its probability is >= its threshold. Candidates are the observed validation
probabilities, so the choice is exact, not a grid approximation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.config import ExperimentConfig

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.data import ExperimentData

log = logging.getLogger(__name__)

# Used when thresholds cannot be tuned (no validation split).
DEFAULT_THRESHOLD = 0.5


# -- data ------------------------------------------------------------------------------------------------


def label_lists(split: Dataset, column: str) -> list[list[str]]:
    """The label lists of a split, as strings."""
    return [[str(label) for label in value] for value in split[column]]


def label_list_problems(split: Dataset, column: str, split_name: str) -> list[str]:
    """The output column of a multilabel dataset must hold lists of labels."""
    values = split[column]
    bad = next((value for value in values if not isinstance(value, list)), None)
    if values and bad is not None:
        return [
            f"prompting.output_column: multilabel needs a list of labels in column {column!r}, but split "
            f'{split_name!r} has {bad!r}; store e.g. ["joy", "neutral"] (or use task_type classification)'
        ]
    return []


def with_ordered_labels(
    load: Callable[[str | None], Dataset | None], column: str, labels: Sequence[str] | None
) -> Callable[[str | None], Dataset | None]:
    """Wrap a split loader so every label list comes back as strings in label order (sorted by name when
    no label list is given, which is then the label order too), without duplicates."""

    def order(value: list) -> list[str]:
        names = {str(label) for label in value}
        if labels is None:
            return sorted(names)
        return [label for label in labels if label in names]

    def loaded(name: str | None) -> Dataset | None:
        split = load(name)
        if split is None:
            return None
        values = [order(value) for value in split[column]]
        return split.remove_columns(column).add_column(column, values)

    return loaded


def members_by_label(values: Sequence[Any], labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Indices of the examples carrying each label; a value is one label or a list of labels."""
    members: dict[str, list[int]] = {label: [] for label in labels}
    for index, value in enumerate(values):
        for label in value if isinstance(value, list) else [value]:
            if label in members:
                members[label].append(index)
    return {label: np.array(indices, dtype=int) for label, indices in members.items()}


def binarize(label_sets: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """(examples, labels) 0/1 matrix; labels outside `labels` are ignored."""
    position = {label: index for index, label in enumerate(labels)}
    matrix = np.zeros((len(label_sets), len(labels)), dtype=int)
    for row, names in enumerate(label_sets):
        for name in names:
            if name in position:
                matrix[row, position[name]] = 1
    return matrix


# -- thresholds --------------------------------------------------------------------------------------------


def _best_cut(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximizing F1 of `scores >= threshold` against the 0/1 `truth`.

    Every distinct score is a candidate: predicting the top-n scores gives F1 = 2 TP / (n + positives).
    Ties in F1 go to the highest threshold (the fewest predicted labels).
    """
    scores, truth = np.asarray(scores, dtype=float).ravel(), np.asarray(truth).ravel()
    positives = truth.sum()
    if positives == 0 or len(scores) == 0:
        return float(np.inf if len(scores) == 0 else scores.max() + 1.0), 0.0
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_truth = scores[order], truth[order]
    # only the last position of each run of equal scores is a valid cut
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    true_positives = np.cumsum(sorted_truth)[ends]
    predicted = ends + 1
    f1 = 2 * true_positives / (predicted + positives)
    best = int(np.argmax(f1))  # argmax takes the first maximum: the highest threshold
    return float(sorted_scores[ends[best]]), float(f1[best])


def tune_thresholds(probabilities: np.ndarray, truth: np.ndarray, mode: str) -> np.ndarray:
    """One threshold per label: the same micro-F1-best one for all ("global") or each label's own F1-best
    one ("per_label")."""
    probabilities, truth = np.asarray(probabilities, dtype=float), np.asarray(truth)
    if mode == "global":
        threshold, _ = _best_cut(probabilities, truth)
        return np.full(probabilities.shape[1], threshold)
    if mode == "per_label":
        return np.array([_best_cut(probabilities[:, k], truth[:, k])[0] for k in range(probabilities.shape[1])])
    raise ValueError(f"unknown threshold mode {mode!r}; choose 'global', 'per_label' or a number")


def decide(probabilities: np.ndarray, thresholds: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """The predicted label set of every example, in label order."""
    chosen = np.asarray(probabilities) >= np.asarray(thresholds)[None, :]
    return [[label for label, keep in zip(labels, row) if keep] for row in chosen]


def thresholds_for(
    config: ExperimentConfig, data: ExperimentData, score: Callable[[Dataset], np.ndarray]
) -> np.ndarray:
    """The thresholds of `inference.thresholds`, tuned on the validation split scored by `score`."""
    mode, labels = config.inference.thresholds, data.labels
    assert labels is not None
    if not isinstance(mode, str):
        return np.full(len(labels), float(mode))
    validation = data.validation
    if validation is None:
        log.warning(
            "No dataset.validation_split to tune %s thresholds on; using %.2f for every label.",
            mode,
            DEFAULT_THRESHOLD,
        )
        return np.full(len(labels), DEFAULT_THRESHOLD)
    limit = config.inference.threshold_examples
    if limit is not None and limit < len(validation):
        validation = validation.shuffle(seed=0).select(range(limit))
    truth = binarize(validation[config.prompting.output_column], labels)
    thresholds = tune_thresholds(score(validation), truth, mode)
    log.info("Tuned %s thresholds on %d validation examples: %s", mode, len(validation), thresholds.round(4))
    return thresholds


def multilabel_rows(
    config: ExperimentConfig, data: ExperimentData, score: Callable[[Dataset], np.ndarray]
) -> list[dict[str, Any]]:
    """Prediction rows for the test split: probabilities per label and the thresholded label set. The
    thresholds are left in `data.thresholds` for results.json."""
    labels, prompting = data.labels, config.prompting
    assert labels is not None
    thresholds = thresholds_for(config, data, score)
    data.thresholds = dict(zip(labels, thresholds.tolist()))
    probabilities = score(data.test)
    rows = []
    for example, probs, predicted in zip(data.test, probabilities, decide(probabilities, thresholds, labels)):
        rows.append(
            {
                **{column: example[column] for column in prompting.input_columns},
                "reference": list(example[prompting.output_column]),
                "prediction": predicted,
                "probabilities": dict(zip(labels, probs.tolist())),
            }
        )
    return rows


# -- generative scoring ------------------------------------------------------------------------------------


def label_set_probabilities(
    model: Any, tokenizer: Any, prompts: list[str], labels: list[str], separator: str, batch_size: int = 8
) -> np.ndarray:
    """P(label in the answer) for every prompt and label, shape (prompts, labels); see the module docstring."""
    from sft.scoring import label_logprobs

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


def predict_generative(
    config: ExperimentConfig, data: ExperimentData, model: Any, tokenizer: Any, seed: int
) -> list[dict]:
    """Multilabel prediction rows with the generative model (label sequences scored as continuations)."""
    from sft.prompting import ICLSampler, PromptBuilder, inference_prompts

    inference, prompting = config.inference, config.prompting
    builder = PromptBuilder(tokenizer, prompting, inference.max_seq_length)
    sampler = ICLSampler(data.icl_pool, prompting.output_column, data.labels, seed, purpose="inference")

    def score(split: Dataset) -> np.ndarray:
        prompts = inference_prompts(builder, sampler, split, inference.icl_examples, inference.icl_fixed)
        return label_set_probabilities(
            model, tokenizer, prompts, list(data.labels or []), prompting.label_separator, inference.batch_size
        )

    return multilabel_rows(config, data, score)
