"""sft.evaluation.batched: every resamplable metric equals the metric function a run uses, on the data as
it is and on resamples of it (materialized and scored by the real function)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from sft.config import EvaluationConfig
from sft.evaluation.batched import SUFFICIENT, sufficient_statistics
from sft.evaluation.metrics import METRICS, MetricInputs, compute_metrics

LABELS = [f"label{i:02d}" for i in range(28)]
CONFIG = EvaluationConfig()


def classification_inputs(n: int = 400, seed: int = 0) -> MetricInputs:
    rng = np.random.default_rng(seed)
    references = [LABELS[i] for i in rng.integers(0, 20, n)]  # some labels never occur
    predictions = [r if rng.random() < 0.6 else LABELS[rng.integers(0, 28)] for r in references]
    probabilities = rng.dirichlet(np.ones(28), n)
    for row, prediction in enumerate(predictions):  # the prediction is the argmax, as the task writes it
        probabilities[row, LABELS.index(prediction)] = probabilities[row].max() + 0.1
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return MetricInputs(references, predictions, LABELS, probabilities)


def multilabel_inputs(n: int = 300, seed: int = 1) -> MetricInputs:
    rng = np.random.default_rng(seed)
    labels = LABELS[:6]
    truth = [[label for label in labels if rng.random() < 0.3] for _ in range(n)]
    predicted = [[label for label in labels if (label in t) != (rng.random() < 0.2)] for t in truth]
    return MetricInputs(
        [",".join(t) for t in truth], [",".join(p) for p in predicted], labels, rng.random((n, 6)), truth, predicted
    )


def generation_inputs(n: int = 60, seed: int = 2) -> MetricInputs:
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "dog", "sat", "on", "a", "mat", "ran", "far", "away", "quickly"]
    references = [" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(n)]
    predictions = [r if rng.random() < 0.3 else " ".join(rng.choice(words, rng.integers(2, 9))) for r in references]
    return MetricInputs(references, predictions)


def select(inputs: MetricInputs, index: np.ndarray) -> MetricInputs:
    """The resample `index` of the examples, materialized."""

    def take(values):
        return None if values is None else [values[i] for i in index]

    probabilities = None if inputs.probabilities is None else np.asarray(inputs.probabilities)[index]
    return MetricInputs(
        take(inputs.references), take(inputs.predictions), inputs.labels, probabilities,
        take(inputs.reference_sets), take(inputs.prediction_sets),
    )  # fmt: skip


CASES = {
    "classification": (
        classification_inputs,
        ["accuracy", "f1", "precision_recall", "mcc", "balanced_accuracy", "ece"],
    ),
    "multilabel": (multilabel_inputs, ["multilabel_f1", "subset_accuracy", "hamming_loss"]),
    "generation": (generation_inputs, ["exact_match", "rouge", "bleu", "chrf"]),
}


def test_every_metric_with_a_batched_form_is_registered():
    assert set(SUFFICIENT) <= set(METRICS)
    for name, builder in SUFFICIENT.items():
        assert builder.__name__ == name


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_metrics_equal_the_metric_functions_on_the_data_and_on_resamples(case):
    make, names = CASES[case]
    inputs = make()
    batched = sufficient_statistics(inputs, names, CONFIG)
    expected = compute_metrics(inputs, names, CONFIG)
    numeric = {key for key, value in expected.items() if isinstance(value, float)}
    assert set(batched) == numeric
    for key, statistic in batched.items():
        assert statistic.value() == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key
    # three resamples scored at once from weights, and one by one by the real functions
    n = len(inputs.references)
    indices = np.random.default_rng(3).integers(0, n, (3, n))
    weights = np.stack([np.bincount(index, minlength=n) for index in indices]).astype(float)
    scored = [compute_metrics(select(inputs, index), names, CONFIG) for index in indices]
    for key, statistic in batched.items():
        resampled = statistic.finish(np.asarray(sparse.csr_matrix(weights) @ statistic.features.toarray()))
        for row, metrics in enumerate(scored):
            assert resampled[row] == pytest.approx(metrics[key], rel=1e-9, abs=1e-12), (key, row)


def test_only_the_asked_keys_are_built():
    inputs = generation_inputs()
    found = sufficient_statistics(inputs, ["bleu", "chrf", "rouge", "exact_match"], CONFIG, {"exact_match"})
    assert set(found) == {"exact_match"} and found["exact_match"].binary


def test_binary_metrics_expose_which_examples_were_right():
    inputs = classification_inputs(50)
    statistic = sufficient_statistics(inputs, ["accuracy"], CONFIG)["accuracy"]
    assert statistic.binary
    assert statistic.correct().tolist() == [float(r == p) for r, p in zip(inputs.references, inputs.predictions)]
