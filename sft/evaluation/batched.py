"""The metrics of `sft.evaluation` in a form that scores many resamples of the test examples at once.

Every metric here is a function of sums over examples: accuracy of the count of correct answers, F1
of the per-label confusion counts, ECE of per-bin counts, BLEU of sacrebleu's n-gram counts. A
`Sufficient` holds those per-example statistics (a sparse (examples, s) matrix) and the function that
turns their sums into the metric. A resample of the examples is a vector of weights (how often each
example was drawn), so B resamples are one (B, examples) weight matrix and their metrics
`finish(weights @ features)`: one sparse product instead of B calls of scikit-learn. Sums of all-ones
weights give the run's own metric; tests/evaluation/test_batched.py checks both against the metric
functions of this package.

`SUFFICIENT` mirrors `METRICS`: registered metric name -> builder(inputs, config) -> {result key:
Sufficient}. A metric without an entry (or a setting the form cannot reproduce, such as
`evaluation.tokenizer_name`) simply has no interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from scipy import sparse

from sft.config import EvaluationConfig
from sft.evaluation.generation import _WordTokenizer
from sft.evaluation.metrics import METRICS, MetricInputs
from sft.evaluation.multilabel import binarize


@dataclass(frozen=True, eq=False)
class Sufficient:
    """Per-example statistics whose column sums determine a metric, and how: the name of a function of
    `FINISHERS` and its parameters (plain JSON values), so a report can store a run's statistics and
    rebuild them without the run's predictions (`sft.report.cache`)."""

    features: sparse.csr_matrix  # (examples, s); metrics of one confusion matrix share the same object
    kind: str  # a key of FINISHERS: (B, s) sums -> (B,) metric values
    params: dict[str, Any] = field(default_factory=dict)
    right: np.ndarray | None = None  # a share of examples answered right: which were (McNemar applies)
    layout: tuple = ()  # what the columns mean (the classes of a confusion matrix): sums of two runs add up only
    # when their layouts are equal

    def finish(self, sums: np.ndarray) -> np.ndarray:
        """(B, s) column sums -> (B,) values of the metric."""
        return FINISHERS[self.kind](np.asarray(sums), **self.params)

    def value(self) -> float:
        """The metric on the examples as they are (every weight 1)."""
        return float(self.finish(np.asarray(self.features.sum(axis=0)))[0])

    @property
    def binary(self) -> bool:
        return self.right is not None

    def correct(self) -> np.ndarray:
        """Per-example 0/1 of a binary metric (which examples were answered right)."""
        if self.right is None:
            raise ValueError("not a share of examples answered right")
        return self.right


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def _one_hot(codes: np.ndarray, width: int, values: np.ndarray | None = None) -> sparse.csr_matrix:
    n = len(codes)
    data = np.ones(n) if values is None else values
    return sparse.csr_matrix((data, (np.arange(n), codes)), shape=(n, width))


# -- finishers: (B, s) sums -> (B,) values, by name ---------------------------------------------------------


def _share_of(sums: np.ndarray) -> np.ndarray:
    """The mean of one value per example, from features [value, 1]."""
    return _divide(sums[:, 0], sums[:, 1])


@lru_cache(maxsize=16)
def _projections(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For flattened K x K confusion counts: the columns of the diagonal, and the (K*K, K) 0/1 matrices
    whose products give each row's sum (references per class) and each column's (predictions)."""
    cells = np.arange(k * k)
    rows, columns = np.zeros((k * k, k)), np.zeros((k * k, k))
    rows[cells, cells // k] = 1
    columns[cells, cells % k] = 1
    return np.arange(k) * (k + 1), rows, columns


def _margins(sums: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(correct per class, references per class, predictions per class), each (B, K): two small matrix
    products rather than reductions over a (B, K, K) view, as a report finishes thousands of these."""
    diagonal, rows, columns = _projections(k)
    return sums[:, diagonal], sums @ rows, sums @ columns


def _per_label(sums: np.ndarray, k: int, listed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, references, predictions) per listed label, each (B, listed)."""
    diagonal, true, predicted = _margins(sums, k)
    return diagonal[:, :listed], true[:, :listed], predicted[:, :listed]


def _accuracy(sums: np.ndarray, k: int) -> np.ndarray:
    """The trace of the confusion matrix over its total."""
    diagonal, _, _ = _margins(sums, k)
    return _divide(diagonal.sum(axis=1), sums.sum(axis=1))


def _f1_macro(sums: np.ndarray, k: int, listed: int) -> np.ndarray:
    tp, true, predicted = _per_label(sums, k, listed)
    return _divide(2 * tp, true + predicted).mean(axis=1)


def _f1_micro(sums: np.ndarray, k: int, listed: int) -> np.ndarray:
    tp, true, predicted = _per_label(sums, k, listed)
    return _divide(2 * tp.sum(axis=1), true.sum(axis=1) + predicted.sum(axis=1))


def _f1_weighted(sums: np.ndarray, k: int, listed: int) -> np.ndarray:
    tp, true, predicted = _per_label(sums, k, listed)
    return _divide((_divide(2 * tp, true + predicted) * true).sum(axis=1), true.sum(axis=1))


def _precision_macro(sums: np.ndarray, k: int, listed: int) -> np.ndarray:
    tp, _, predicted = _per_label(sums, k, listed)
    return _divide(tp, predicted).mean(axis=1)


def _recall_macro(sums: np.ndarray, k: int, listed: int) -> np.ndarray:
    tp, true, _ = _per_label(sums, k, listed)
    return _divide(tp, true).mean(axis=1)


def _mcc(sums: np.ndarray, k: int) -> np.ndarray:
    """Matthews' multiclass correlation over every class present, as scikit-learn computes it."""
    diagonal, true, predicted = _margins(sums, k)
    correct, total = diagonal.sum(axis=1), sums.sum(axis=1)
    covariance = correct * total - np.einsum("bk,bk->b", true, predicted)
    squares = total**2
    denominator = np.sqrt((squares - np.einsum("bk,bk->b", predicted, predicted)) *
                          (squares - np.einsum("bk,bk->b", true, true)))  # fmt: skip
    return _divide(covariance, denominator)


def _balanced_accuracy(sums: np.ndarray, k: int) -> np.ndarray:
    """Mean recall over the classes that occur among the references."""
    diagonal, true, _ = _margins(sums, k)
    recall = _divide(diagonal, true)
    present = true > 0
    return _divide((recall * present).sum(axis=1), present.sum(axis=1))


def _ece(sums: np.ndarray, bins: int) -> np.ndarray:
    """Sum over bins of |correct - confidence| / n (each bin's share times its gap)."""
    return np.abs(sums[:, :bins]).sum(axis=1) / sums[:, bins]


def _split(sums: np.ndarray, labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, false positives, false negatives) per label of multilabel counts."""
    return sums[:, :labels], sums[:, labels : 2 * labels], sums[:, 2 * labels :]


def _multilabel_f1_micro(sums: np.ndarray, labels: int) -> np.ndarray:
    tp, fp, fn = (part.sum(axis=1) for part in _split(sums, labels))
    return _divide(2 * tp, 2 * tp + fp + fn)


def _multilabel_f1_macro(sums: np.ndarray, labels: int) -> np.ndarray:
    tp, fp, fn = _split(sums, labels)
    return _divide(2 * tp, 2 * tp + fp + fn).mean(axis=1)


@lru_cache(maxsize=8)
def _sacrebleu_metric(name: str, tokenize: str | None) -> Any:
    return BLEU(tokenize=tokenize) if name == "bleu" else CHRF()


def _sacrebleu_score(sums: np.ndarray, name: str, tokenize: str | None = None) -> np.ndarray:
    """sacrebleu's corpus score from summed per-sentence statistics."""
    metric = _sacrebleu_metric(name, tokenize)
    return np.array([metric._compute_score_from_stats(np.rint(row).astype(int).tolist()).score for row in sums])


FINISHERS: dict[str, Callable[..., np.ndarray]] = {
    "share": _share_of,
    "accuracy": _accuracy,
    "f1_macro": _f1_macro,
    "f1_micro": _f1_micro,
    "f1_weighted": _f1_weighted,
    "precision_macro": _precision_macro,
    "recall_macro": _recall_macro,
    "mcc": _mcc,
    "balanced_accuracy": _balanced_accuracy,
    "ece": _ece,
    "multilabel_f1_micro": _multilabel_f1_micro,
    "multilabel_f1_macro": _multilabel_f1_macro,
    "sacrebleu": _sacrebleu_score,
}


def _share(values: np.ndarray, binary: bool = False) -> Sufficient:
    """The mean of one value per example: features [value, 1]."""
    values = np.asarray(values, dtype=float)
    features = sparse.csr_matrix(np.column_stack([values, np.ones(len(values))]))
    return Sufficient(features, "share", right=values if binary else None)


# -- single-label classification ------------------------------------------------------------------------


def _classes(inputs: MetricInputs) -> tuple[list[str], dict[str, int]]:
    """The label list, then any other value the references or predictions hold (sorted)."""
    listed = list(inputs.labels or [])
    classes = listed + sorted((set(inputs.references) | set(inputs.predictions)) - set(listed))
    return classes, {label: index for index, label in enumerate(classes)}


_LAST_CONFUSION: list[tuple[MetricInputs, tuple]] = []  # the inputs last seen and their confusion one-hot


def _confusion(inputs: MetricInputs) -> tuple[sparse.csr_matrix, dict[str, int], tuple]:
    """One-hot of each example's (reference, prediction) cell of the K x K confusion matrix; the
    finishers' parameters (K, and how many of the K classes are the listed labels); the classes. F1,
    MCC, precision/recall and balanced accuracy of the same inputs get the same matrix object, so a
    report resamples it once for all."""
    if _LAST_CONFUSION and _LAST_CONFUSION[0][0] is inputs:
        return _LAST_CONFUSION[0][1]
    classes, index = _classes(inputs)
    k = len(classes)
    codes = np.array([index[r] * k + index[p] for r, p in zip(inputs.references, inputs.predictions)], dtype=int)
    found = (_one_hot(codes, k * k), {"k": k, "listed": len(inputs.labels or classes)}, tuple(classes))
    _LAST_CONFUSION[:] = [(inputs, found)]
    return found


def accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    """The trace of the confusion matrix over its total (the matrix F1 and MCC resample anyway)."""
    features, shape, classes = _confusion(inputs)
    correct = np.array([r == p for r, p in zip(inputs.references, inputs.predictions)], dtype=float)
    return {"accuracy": Sufficient(features, "accuracy", {"k": shape["k"]}, correct, layout=classes)}


def f1(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    features, shape, classes = _confusion(inputs)
    return {key: Sufficient(features, key, shape, layout=classes) for key in ("f1_macro", "f1_micro", "f1_weighted")}


def precision_recall(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    features, shape, classes = _confusion(inputs)
    return {key: Sufficient(features, key, shape, layout=classes) for key in ("precision_macro", "recall_macro")}


def mcc(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    features, shape, classes = _confusion(inputs)
    return {"mcc": Sufficient(features, "mcc", {"k": shape["k"]}, layout=classes)}


def balanced_accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    features, shape, classes = _confusion(inputs)
    return {"balanced_accuracy": Sufficient(features, "balanced_accuracy", {"k": shape["k"]}, layout=classes)}


def ece(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    """Per confidence bin: correct answers minus summed confidence, and the count of all examples."""
    if inputs.probabilities is None or inputs.labels is None:
        return {}
    probabilities = np.asarray(inputs.probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    correct = (np.asarray(inputs.labels)[probabilities.argmax(axis=1)] == np.asarray(inputs.references)).astype(float)
    bins = config.ece_bins
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    n = len(index)
    gaps = correct - confidence
    rows, columns = np.repeat(np.arange(n), 2), np.column_stack([index, np.full(n, bins)]).ravel()
    data = np.column_stack([gaps, np.ones(n)]).ravel()
    features = sparse.csr_matrix((data, (rows, columns)), shape=(n, bins + 1))
    return {"ece": Sufficient(features, "ece", {"bins": bins}, layout=(bins,))}


# -- multilabel -----------------------------------------------------------------------------------------


def _indicators(inputs: MetricInputs) -> tuple[np.ndarray, np.ndarray]:
    if inputs.reference_sets is None or inputs.prediction_sets is None or inputs.labels is None:
        raise ValueError("multilabel metrics need reference_sets, prediction_sets and labels")
    return binarize(inputs.reference_sets, inputs.labels), binarize(inputs.prediction_sets, inputs.labels)


def multilabel_f1(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    truth, predicted = _indicators(inputs)
    labels = truth.shape[1]
    counts = np.hstack([truth * predicted, (1 - truth) * predicted, truth * (1 - predicted)]).astype(float)
    features = sparse.csr_matrix(counts)
    layout = tuple(inputs.labels or ())
    both = (truth * predicted).sum(axis=1)
    size = truth.sum(axis=1) + predicted.sum(axis=1)
    per_example = np.where(size > 0, 2 * both / np.maximum(size, 1), 1.0)  # both empty: 1 (zero_division=1)
    return {
        "f1_micro": Sufficient(features, "multilabel_f1_micro", {"labels": labels}, layout=layout),
        "f1_macro": Sufficient(features, "multilabel_f1_macro", {"labels": labels}, layout=layout),
        "f1_samples": _share(per_example),
    }


def subset_accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    truth, predicted = _indicators(inputs)
    return {"subset_accuracy": _share((truth == predicted).all(axis=1).astype(float), binary=True)}


def hamming_loss(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    truth, predicted = _indicators(inputs)
    return {"hamming_loss": _share((truth != predicted).mean(axis=1))}


# -- generation -----------------------------------------------------------------------------------------


def exact_match(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    def norm(text: str) -> str:
        return " ".join(text.split())

    matches = [norm(p) == norm(r) for p, r in zip(inputs.predictions, inputs.references)]
    return {"exact_match": _share(np.asarray(matches, dtype=float), binary=True)}


def rouge(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    """Means of per-example ROUGE F-measures (the word splitter of `sft.evaluation.generation`)."""
    if config.tokenizer_name:  # would load a HF tokenizer: the report stays light
        return {}
    from rouge_score import rouge_scorer

    kinds = ["rouge1", "rouge2", "rougeL"]
    scorer = rouge_scorer.RougeScorer(kinds, tokenizer=_WordTokenizer())
    scores = [scorer.score(r, p) for r, p in zip(inputs.references, inputs.predictions)]
    return {kind: _share(np.array([score[kind].fmeasure for score in scores])) for kind in kinds}


def _sacrebleu(name: str, tokenize: str | None, inputs: MetricInputs) -> Sufficient:
    """sacrebleu's per-sentence statistics (n-gram matches and totals), which it sums for a corpus score."""
    metric = _sacrebleu_metric(name, tokenize)
    statistics = np.asarray(metric._extract_corpus_statistics(inputs.predictions, [inputs.references]), dtype=float)
    return Sufficient(sparse.csr_matrix(statistics), "sacrebleu", {"name": name, "tokenize": tokenize})


def bleu(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    if config.tokenizer_name:
        return {}
    return {"bleu": _sacrebleu("bleu", config.bleu_tokenize, inputs)}


def chrf(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    return {"chrf": _sacrebleu("chrf", None, inputs)}


# -- structured -----------------------------------------------------------------------------------------


def valid(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    return {"valid": _share(np.asarray(inputs.valid or [], dtype=float), binary=True)}


def field_f1(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Sufficient]:
    """The task's field counts are laid out as multilabel counts are (tp, fp, fn blocks, one column per
    field), so the multilabel finishers pool (micro) and average (macro) them."""
    if inputs.fields is None or inputs.field_counts is None:
        return {}
    features = sparse.csr_matrix(np.asarray(inputs.field_counts, dtype=float))
    params, layout = {"labels": len(inputs.fields)}, tuple(inputs.fields)
    return {
        "field_f1_micro": Sufficient(features, "multilabel_f1_micro", params, layout=layout),
        "field_f1_macro": Sufficient(features, "multilabel_f1_macro", params, layout=layout),
    }


SUFFICIENT: dict[str, Callable[[MetricInputs, EvaluationConfig], dict[str, Sufficient]]] = {
    "accuracy": accuracy,
    "f1": f1,
    "precision_recall": precision_recall,
    "mcc": mcc,
    "balanced_accuracy": balanced_accuracy,
    "ece": ece,
    "multilabel_f1": multilabel_f1,
    "subset_accuracy": subset_accuracy,
    "hamming_loss": hamming_loss,
    "exact_match": exact_match,
    "rouge": rouge,
    "bleu": bleu,
    "chrf": chrf,
    "valid": valid,
    "field_f1": field_f1,
}


def sufficient_statistics(
    inputs: MetricInputs, names: list[str], config: EvaluationConfig, keys: set[str] | None = None
) -> dict[str, Sufficient]:
    """The resamplable form of every metric of `names` that has one; only the result `keys` asked for
    (all when None), so a report showing five columns does not score ROUGE it never shows."""
    found: dict[str, Sufficient] = {}
    for name in names:
        outputs = set(METRICS.info(name).get("outputs", ())) if name in METRICS else set()
        if name in SUFFICIENT and (keys is None or outputs & keys):
            found.update(SUFFICIENT[name](inputs, config))
    return found if keys is None else {key: value for key, value in found.items() if key in keys}
