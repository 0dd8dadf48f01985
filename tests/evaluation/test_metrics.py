"""sft.evaluation.metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sft.config import EvaluationConfig
from sft.evaluation.metrics import METRICS, MetricInputs, compute_metrics, higher_is_better, register_metric
from sft.tasks import TASKS

# references a a a b b c, predictions a a b b c c; confusion (rows = reference, columns = prediction):
#   a: 2 1 0
#   b: 0 1 1
#   c: 0 0 1
REFERENCES = ["a", "a", "a", "b", "b", "c"]
PREDICTIONS = ["a", "a", "b", "b", "c", "c"]
LABELS = ["a", "b", "c"]
# per class: a P=2/2 R=2/3 F1=4/5; b P=1/2 R=1/2 F1=1/2; c P=1/2 R=1/1 F1=2/3
PER_CLASS = {
    "a": {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3},
    "b": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
    "c": {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1},
}


def metrics_of(inputs: MetricInputs, task: str, config: EvaluationConfig) -> dict:
    """What a run computes: the configured metrics, else the task's defaults."""
    return compute_metrics(inputs, config.metrics or TASKS[task].default_metrics, config)


def classification(metrics: list[str] | None = None, **config) -> dict:
    inputs = MetricInputs(references=REFERENCES, predictions=PREDICTIONS, labels=LABELS)
    return metrics_of(inputs, "classification", EvaluationConfig(metrics=metrics, **config))


def generation(references: list[str], predictions: list[str], metrics: list[str] | None = None) -> dict:
    inputs = MetricInputs(references=references, predictions=predictions)
    return metrics_of(inputs, "generation", EvaluationConfig(metrics=metrics))


# -- classification ------------------------------------------------------------------------------------


def test_classification_metrics_by_hand():
    results = classification()
    assert results["accuracy"] == pytest.approx(4 / 6)
    assert results["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)  # 59/90
    assert results["f1_micro"] == pytest.approx(4 / 6)
    assert results["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)  # 61/90
    assert results["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert results["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)  # 13/18
    assert results["balanced_accuracy"] == pytest.approx(13 / 18)
    # multiclass MCC: (c*s - sum p_k t_k) / sqrt((s^2 - sum p_k^2) (s^2 - sum t_k^2)) with c=4, s=6,
    # predicted counts p = (2, 2, 2), true counts t = (3, 2, 1)
    assert results["mcc"] == pytest.approx((4 * 6 - (6 + 4 + 2)) / math.sqrt((36 - 12) * (36 - 14)))
    assert results["per_class"] == {
        label: {key: pytest.approx(value) for key, value in scores.items()} for label, scores in PER_CLASS.items()
    }
    assert results["confusion_matrix"] == {"labels": LABELS, "matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 1]]}


def test_confusion_matrix_follows_the_label_order():
    inputs = MetricInputs(references=REFERENCES, predictions=PREDICTIONS, labels=["c", "a", "b"])
    results = metrics_of(inputs, "classification", EvaluationConfig(metrics=["confusion_matrix", "per_class"]))
    assert results["confusion_matrix"] == {"labels": ["c", "a", "b"], "matrix": [[1, 0, 0], [0, 2, 1], [1, 0, 1]]}
    assert list(results["per_class"]) == ["c", "a", "b"]


def test_a_label_never_predicted_or_seen_still_counts_in_macro_averages():
    inputs = MetricInputs(references=REFERENCES, predictions=PREDICTIONS, labels=[*LABELS, "d"])
    results = metrics_of(inputs, "classification", EvaluationConfig(metrics=["f1", "per_class"]))
    assert results["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3 + 0) / 4)
    assert results["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_scalar_metrics_are_plain_floats():
    for key, value in classification().items():
        if key not in ("per_class", "confusion_matrix"):
            assert type(value) is float, key


# -- ECE ---------------------------------------------------------------------------------------------


def ece(references: list[str], probabilities, labels: list[str], bins: int) -> float:
    inputs = MetricInputs(
        references=references,
        predictions=["unused"] * len(references),
        labels=labels,
        probabilities=np.asarray(probabilities),
    )
    return metrics_of(inputs, "classification", EvaluationConfig(metrics=["ece"], ece_bins=bins))["ece"]


def test_ece_by_hand():
    # confidences 0.9 (right), 0.6 (wrong), 0.7 (right), 0.8 (wrong); 4 bins of width 0.25:
    #   (0.5, 0.75]: 0.6, 0.7 -> accuracy 0.5, confidence 0.65, weight 2/4 -> 0.075
    #   (0.75, 1.0]: 0.9, 0.8 -> accuracy 0.5, confidence 0.85, weight 2/4 -> 0.175
    probabilities = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]]
    assert ece(["a", "b", "b", "a"], probabilities, ["a", "b"], bins=4) == pytest.approx(0.25)
    # one bin: |mean accuracy - mean confidence| = |0.5 - 0.75|
    assert ece(["a", "b", "b", "a"], probabilities, ["a", "b"], bins=1) == pytest.approx(0.25)
    # all right: in each bin accuracy 1, so the gaps are 1 - confidence
    assert ece(["a", "a", "b", "b"], probabilities, ["a", "b"], bins=4) == pytest.approx(
        0.5 * (1 - 0.65) + 0.5 * (1 - 0.85)
    )


def test_ece_bins_are_closed_on_the_right():
    # 2 bins, (0, 0.5] and (0.5, 1]: confidence exactly 0.5 belongs to the first one
    probabilities = [[0.5, 0.3, 0.2], [0.2, 0.4, 0.4], [0.9, 0.05, 0.05], [0.1, 0.7, 0.2]]
    references = ["a", "c", "a", "a"]  # right, wrong (argmax takes the first "b"), right, wrong
    # first bin: 0.5 and 0.4, accuracy 0.5, confidence 0.45; second: 0.9 and 0.7, accuracy 0.5, confidence 0.8
    expected = 0.5 * abs(0.5 - 0.45) + 0.5 * abs(0.5 - 0.8)
    assert ece(references, probabilities, ["a", "b", "c"], bins=2) == pytest.approx(expected)


def test_ece_is_zero_when_perfectly_calibrated():
    certain = np.tile([1.0, 0.0, 0.0], (20, 1))
    assert ece(["x"] * 20, certain, ["x", "y", "z"], bins=10) == pytest.approx(0.0, abs=1e-12)

    # confidence 0.8 right 8 times out of 10, confidence 0.6 right 6 times out of 10, certainty always right
    probabilities = [[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 10 + [[1.0, 0.0]] * 5
    references = ["a"] * 8 + ["b"] * 2 + ["b"] * 6 + ["a"] * 4 + ["a"] * 5
    assert ece(references, probabilities, ["a", "b"], bins=10) == pytest.approx(0.0, abs=1e-12)
    # ... but not when the answers are shuffled between the confidence levels
    swapped = ["a"] * 6 + ["b"] * 4 + ["b"] * 8 + ["a"] * 2 + ["a"] * 5
    assert ece(swapped, probabilities, ["a", "b"], bins=10) == pytest.approx(0.2 * 10 / 25 + 0.2 * 10 / 25)


def test_ece_needs_probabilities():
    assert "ece" not in classification()


# -- generation ----------------------------------------------------------------------------------------

SENTENCES = [
    "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
    "Ein Boston Terrier läuft über saftig-grünes Gras vor einem weißen Zaun.",
]


def test_bleu_and_chrf_are_100_for_identical_text():
    results = generation(SENTENCES, SENTENCES, metrics=["bleu", "chrf"])
    assert results == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}


def test_bleu_and_chrf_are_lower_for_different_text():
    different = ["Ein Mann mit einem roten Hut, der etwas ansieht.", "Ein Hund läuft über grünes Gras."]
    partial = generation(SENTENCES, different, metrics=["bleu", "chrf"])
    unrelated = generation(SENTENCES, ["Zwei Katzen schlafen.", "Nichts passt hier."], metrics=["bleu", "chrf"])
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100
    assert unrelated["bleu"] < partial["bleu"]
    assert unrelated["chrf"] < partial["chrf"]


def test_rouge_is_1_for_identical_and_lower_for_different():
    same = generation(SENTENCES, SENTENCES, metrics=["rouge"])
    assert same == {"rouge1": pytest.approx(1.0), "rouge2": pytest.approx(1.0), "rougeL": pytest.approx(1.0)}
    different = generation(["the big dog sees the cat"], ["the cat sees the big dog"], metrics=["rouge"])
    assert different["rouge1"] == pytest.approx(1.0)  # same words ...
    assert different["rougeL"] < 1.0 and different["rouge2"] < 1.0  # ... in another order


def test_rouge_keeps_non_ascii_words():
    # rouge-score's default tokenizer replaces non-ASCII letters by spaces: "Mädchen" and "Mödchen" would
    # both become "m dchen" and match, and Chinese or Arabic text would be scored as empty (0)
    assert generation(["Mädchen"], ["Madchen"], metrics=["rouge"])["rouge1"] == 0.0
    assert generation(["Mädchen"], ["Mödchen"], metrics=["rouge"])["rouge1"] == 0.0
    assert generation(["Ein Mädchen"], ["Ein Mädchen"], metrics=["rouge"])["rouge1"] == pytest.approx(1.0)
    for text in ("我喜欢猫", "القطة نائمة"):
        assert generation([text], [text], metrics=["rouge"])["rouge1"] == pytest.approx(1.0), text
    assert generation(["القطة نائمة"], ["الكلب نائم"], metrics=["rouge"])["rouge1"] == 0.0


def test_exact_match_ignores_whitespace_differences():
    references = ["der hund sieht", "die katze", "ein vogel"]
    predictions = ["  der  hund\nsieht ", "die katze", "ein Vogel"]
    assert generation(references, predictions, metrics=["exact_match"]) == {"exact_match": pytest.approx(2 / 3)}
    assert generation([], [], metrics=["exact_match"]) == {"exact_match": 0.0}


def test_generation_defaults():
    results = generation(SENTENCES, SENTENCES)
    assert set(results) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match"}
    assert results["exact_match"] == 1.0


# -- selection and the registry --------------------------------------------------------------------------


def test_evaluation_metrics_restricts_the_output():
    assert set(classification(["accuracy", "mcc"])) == {"accuracy", "mcc"}
    assert set(classification(["f1"])) == {"f1_macro", "f1_micro", "f1_weighted"}
    defaults = classification()
    assert {"accuracy", "f1_macro", "mcc", "per_class", "confusion_matrix"} <= set(defaults)
    for task in TASKS.values():
        assert set(task.default_metrics) <= set(METRICS)


def test_unknown_metric_lists_the_available_ones():
    with pytest.raises(KeyError) as caught:
        classification(["acuracy"])
    message = caught.value.args[0]
    assert "'acuracy'" in message
    assert "did you mean 'accuracy'" in message
    for name in METRICS:
        assert name in message


def test_references_and_predictions_must_have_the_same_length():
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        generation(["a", "b"], ["a"])


@pytest.fixture
def clean_registry():
    before = set(METRICS)
    yield
    for name in set(METRICS) - before:
        METRICS.remove(name)


def test_register_metric_is_usable_through_compute_metrics(clean_registry):
    @register_metric("mean_length_ratio")
    def mean_length_ratio(inputs: MetricInputs, config: EvaluationConfig) -> dict:
        ratios = [len(p) / len(r) for p, r in zip(inputs.predictions, inputs.references)]
        return {"mean_length_ratio": sum(ratios) / len(ratios)}

    assert METRICS.get("mean_length_ratio") is mean_length_ratio
    results = generation(["abcd", "ab"], ["ab", "ab"], metrics=["mean_length_ratio", "exact_match"])
    assert results == {"mean_length_ratio": pytest.approx(0.75), "exact_match": pytest.approx(0.5)}

    with pytest.raises(ValueError, match="already registered"):
        register_metric("mean_length_ratio")(lambda inputs, config: {})


def test_every_metric_declares_its_direction_where_it_is_registered(clean_registry):
    """The report reads the direction from the registry: lower is better exactly where a metric says so."""
    lower = {name for name in METRICS if not METRICS.info(name)["higher_is_better"]}
    assert lower == {"ece", "hamming_loss"}
    assert higher_is_better("f1_macro") and higher_is_better("per_class.a.f1")
    assert not higher_is_better("ece") and not higher_is_better("hamming_loss")

    @register_metric("edit_distance", higher_is_better=False)
    def edit_distance(inputs: MetricInputs, config: EvaluationConfig) -> dict:
        return {"edit_distance": 0.0}

    # a name alone says nothing: "edit_distance" is lower-better because it was registered so
    assert not higher_is_better("edit_distance")


def test_every_table_metric_of_a_task_is_produced_by_a_default_metric():
    for task in TASKS.values():
        produced = {key for name in task.default_metrics for key in METRICS.info(name)["outputs"]}
        assert set(task.table_metrics) <= produced, task.name
