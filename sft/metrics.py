"""Evaluation metrics, computed locally with scikit-learn, sacrebleu and rouge-score (nothing downloaded).

`METRICS` is the registry: name -> function taking a `MetricInputs` and the evaluation config and
returning a dict of results. Add one with `@register_metric("name")` and list it in
`evaluation.metrics`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sft.config import EvaluationConfig, TaskType
from sft.registry import lookup, registrar

METRICS: dict[str, Callable[[MetricInputs, EvaluationConfig], dict[str, Any]]] = {}
register_metric = registrar(METRICS, "metric")

DEFAULT_METRICS: dict[TaskType, list[str]] = {
    "classification": [
        "accuracy",
        "f1",
        "precision_recall",
        "mcc",
        "balanced_accuracy",
        "ece",
        "per_class",
        "confusion_matrix",
    ],
    "generation": ["bleu", "chrf", "rouge", "exact_match"],
    "multilabel": ["multilabel_f1", "subset_accuracy", "hamming_loss", "per_label"],
}
# The columns of the aggregated table, in this order.
MAIN_METRICS: dict[TaskType, list[str]] = {
    "classification": ["accuracy", "f1_macro", "f1_micro", "mcc", "ece"],
    "generation": ["bleu", "chrf", "rougeL", "exact_match"],
    "multilabel": ["f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "hamming_loss"],
}


@dataclass
class MetricInputs:
    references: list[str]
    predictions: list[str]
    labels: list[str] | None = None  # classification: the label set, in order
    probabilities: np.ndarray | None = None  # classification: (examples, labels)
    reference_sets: list[list[str]] | None = None  # multilabel: the label sets
    prediction_sets: list[list[str]] | None = None


def compute_metrics(inputs: MetricInputs, task_type: TaskType, config: EvaluationConfig) -> dict[str, Any]:
    """Every metric named in the config (or the task's defaults), merged into one dict."""
    if len(inputs.references) != len(inputs.predictions):
        raise ValueError(f"{len(inputs.references)} references but {len(inputs.predictions)} predictions")
    results: dict[str, Any] = {}
    for name in config.metrics or DEFAULT_METRICS[task_type]:
        results.update(lookup(METRICS, name, "metric")(inputs, config))
    return results


# -- classification ----------------------------------------------------------------------------------


@register_metric("accuracy")
def accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score

    return {"accuracy": float(accuracy_score(inputs.references, inputs.predictions))}


@register_metric("f1")
def f1(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    return {
        f"f1_{average}": float(
            f1_score(inputs.references, inputs.predictions, labels=inputs.labels, average=average, zero_division=0)
        )
        for average in ("macro", "micro", "weighted")
    }


@register_metric("precision_recall")
def precision_recall(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import precision_score, recall_score

    common = {"labels": inputs.labels, "average": "macro", "zero_division": 0}
    return {
        "precision_macro": float(precision_score(inputs.references, inputs.predictions, **common)),
        "recall_macro": float(recall_score(inputs.references, inputs.predictions, **common)),
    }


@register_metric("mcc")
def mcc(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import matthews_corrcoef

    return {"mcc": float(matthews_corrcoef(inputs.references, inputs.predictions))}


@register_metric("balanced_accuracy")
def balanced_accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import balanced_accuracy_score

    return {"balanced_accuracy": float(balanced_accuracy_score(inputs.references, inputs.predictions))}


@register_metric("ece")
def expected_calibration_error(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Top-label ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| weighted
    by the bin's share of examples."""
    if inputs.probabilities is None or inputs.labels is None:
        return {}
    probabilities = np.asarray(inputs.probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    chosen = np.asarray(inputs.labels)[probabilities.argmax(axis=1)]
    correct = (chosen == np.asarray(inputs.references)).astype(float)
    # bin b holds confidences in (b/n, (b+1)/n]; confidence 0 joins the first bin
    bins = np.clip(np.ceil(confidence * config.ece_bins).astype(int) - 1, 0, config.ece_bins - 1)
    ece = 0.0
    for b in range(config.ece_bins):
        members = bins == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return {"ece": float(ece)}


@register_metric("per_class")
def per_class(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = inputs.labels or sorted(set(inputs.references))
    precision, recall, f1_scores, support = precision_recall_fscore_support(
        inputs.references, inputs.predictions, labels=labels, zero_division=0
    )
    return {
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1_scores, support)
        }
    }


@register_metric("confusion_matrix")
def confusion(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Rows are references, columns predictions, both in label order."""
    from sklearn.metrics import confusion_matrix

    labels = inputs.labels or sorted(set(inputs.references))
    matrix = confusion_matrix(inputs.references, inputs.predictions, labels=labels)
    return {"confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()}}


# -- generation ----------------------------------------------------------------------------------------


class _WordTokenizer:
    """Splits text into lowercased words; unlike rouge-score's default it keeps non-ASCII letters, so
    German, Arabic or Chinese text is not erased before scoring."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())


class _HFTokenizer:
    """Words as a HF tokenizer splits them (evaluation.tokenizer_name), for languages whose words the
    default splitters get wrong."""

    def __init__(self, name: str):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(text)


def _word_tokenizer(config: EvaluationConfig) -> Any:
    return _HFTokenizer(config.tokenizer_name) if config.tokenizer_name else _WordTokenizer()


@register_metric("bleu")
def bleu(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    import sacrebleu

    predictions, references, tokenize = inputs.predictions, inputs.references, config.bleu_tokenize
    if config.tokenizer_name:
        splitter = _HFTokenizer(config.tokenizer_name)
        predictions = [" ".join(splitter.tokenize(text)) for text in predictions]
        references = [" ".join(splitter.tokenize(text)) for text in references]
        tokenize = "none"
    return {"bleu": float(sacrebleu.corpus_bleu(predictions, [references], tokenize=tokenize).score)}


@register_metric("chrf")
def chrf(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    import sacrebleu

    return {"chrf": float(sacrebleu.corpus_chrf(inputs.predictions, [inputs.references]).score)}


@register_metric("rouge")
def rouge(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Mean ROUGE-1/2/L F-measures."""
    from rouge_score import rouge_scorer

    kinds = ["rouge1", "rouge2", "rougeL"]
    scorer = rouge_scorer.RougeScorer(kinds, tokenizer=_word_tokenizer(config))
    totals = dict.fromkeys(kinds, 0.0)
    for reference, prediction in zip(inputs.references, inputs.predictions):
        scores = scorer.score(reference, prediction)
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    count = max(len(inputs.references), 1)
    return {kind: total / count for kind, total in totals.items()}


@register_metric("exact_match")
def exact_match(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Share of predictions equal to their reference after collapsing whitespace."""

    def norm(text: str) -> str:
        return " ".join(text.split())

    matches = [norm(p) == norm(r) for p, r in zip(inputs.predictions, inputs.references)]
    return {"exact_match": float(np.mean(matches)) if matches else 0.0}


# -- multilabel ----------------------------------------------------------------------------------------


def _indicators(inputs: MetricInputs) -> tuple[np.ndarray, np.ndarray]:
    """(reference, prediction) 0/1 matrices of shape (examples, labels)."""
    from sft.multilabel import binarize

    if inputs.reference_sets is None or inputs.prediction_sets is None or inputs.labels is None:
        raise ValueError("multilabel metrics need reference_sets, prediction_sets and labels")
    return binarize(inputs.reference_sets, inputs.labels), binarize(inputs.prediction_sets, inputs.labels)


@register_metric("multilabel_f1")
def multilabel_f1(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """F1 over all (example, label) decisions (micro), averaged over labels (macro) or over examples
    (samples; an example with no reference and no predicted label counts as 1)."""
    from sklearn.metrics import f1_score

    truth, predicted = _indicators(inputs)
    return {
        f"f1_{average}": float(f1_score(truth, predicted, average=average, zero_division=int(average == "samples")))
        for average in ("micro", "macro", "samples")
    }


@register_metric("subset_accuracy")
def subset_accuracy(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Share of examples whose predicted label set is exactly the reference set."""
    from sklearn.metrics import accuracy_score

    truth, predicted = _indicators(inputs)
    return {"subset_accuracy": float(accuracy_score(truth, predicted))}


@register_metric("hamming_loss")
def hamming(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Share of wrong (example, label) decisions."""
    from sklearn.metrics import hamming_loss

    truth, predicted = _indicators(inputs)
    return {"hamming_loss": float(hamming_loss(truth, predicted))}


@register_metric("per_label")
def per_label(inputs: MetricInputs, config: EvaluationConfig) -> dict[str, Any]:
    """Precision, recall, F1 and support of every label as its own binary decision."""
    from sklearn.metrics import precision_recall_fscore_support

    truth, predicted = _indicators(inputs)
    precision, recall, f1_scores, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    return {
        "per_label": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for label, p, r, f, n in zip(inputs.labels or [], precision, recall, f1_scores, support)
        }
    }
