"""Model selection during training (sft.training.selection): evaluation on the validation split with the
task's own metric, the learning curve in results.json, early stopping that keeps the best adapter, and
the config errors of bad settings before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import classification_config, merge, problems_of, training_sections

from sft.config import ConfigError, parse_config
from sft.data.prepare import carve_validation, prepare_data
from sft.experiment.checks import validate_grid
from sft.experiment.run import evaluate, run_experiment
from sft.results.files import read_jsonl
from sft.results.layout import Run
from sft.tasks import task_for
from sft.tasks.base import selection_problems
from sft.tasks.classification import CLASSIFICATION

SEED = 0
FLIP = {"negative": "positive", "positive": "negative", "neutral": "neutral"}


def selection_config(data: Path, model: Path, training: dict, head: bool = True, shots: int = 4, **sections) -> dict:
    raw = classification_config(data, model, **training_sections(shots=shots, epochs=8))
    raw = merge(raw, {"dataset": {**raw["dataset"], "validation_split": "validation"}})
    raw["training"] = {**raw["training"], **training}
    if head:
        raw["model"]["head"] = "classification"
    return merge(raw, sections)


# -- config errors, before any model loads ---------------------------------------------------------------


def test_patience_without_evaluation_is_a_config_error(sentiment_data, tiny_qwen):
    raw = selection_config(sentiment_data, tiny_qwen, {"early_stopping_patience": 3, "metric": "accuracy"})
    message = " ".join(problems_of(raw))
    assert "training.early_stopping_patience, training.metric" in message
    assert "set training.eval_every" in message
    no_loss = selection_config(sentiment_data, tiny_qwen, {"eval_every": 1, "metric": "loss", "eval_loss": False})
    assert "remove training.eval_loss: false" in " ".join(problems_of(no_loss))


def test_evaluation_without_validation_split_is_a_config_error(sentiment_data, tiny_qwen):
    raw = selection_config(sentiment_data, tiny_qwen, {"eval_every": 1})
    raw["dataset"].pop("validation_split")
    message = " ".join(problems_of(raw))
    assert "training.eval_every" in message and "dataset.validation_split" in message
    assert "training.validation_from_train" in message
    both = selection_config(sentiment_data, tiny_qwen, {"eval_every": 1, "validation_from_train": 10})
    assert "remove one" in " ".join(problems_of(both))


def test_a_metric_the_task_does_not_have_is_a_config_error(sentiment_data, tiny_qwen, tmp_path):
    """`bleu` is a generation metric and `per_class` a table: neither picks a classification adapter.
    Both the grid validation and the single-experiment path refuse them before any model loads."""
    raw = selection_config(sentiment_data, tiny_qwen, {"eval_every": 1, "metric": "bleu"})
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"configs": {"a": raw, "b": merge(raw, {"training": {"metric": "per_class"}})}}))
    with pytest.raises(ConfigError) as caught:
        validate_grid(grid, check_data=False)
    messages = caught.value.messages
    assert len(messages) == 2
    assert all("training.metric" in message and "f1_macro" in message for message in messages)
    with pytest.raises(ConfigError, match=r"training\.metric: 'bleu'"):
        prepare_data(parse_config(raw), SEED)
    # a metric of the task, the validation loss, and a metric added by evaluation.metrics are accepted
    for metric, metrics in (("mcc", None), ("loss", None), ("accuracy", ["accuracy"])):
        config = parse_config(merge(raw, {"training": {"metric": metric}, "evaluation": {"metrics": metrics}}))
        assert selection_problems(config, task_for(config)) == []
    only_accuracy = merge(raw, {"training": {"metric": "mcc"}, "evaluation": {"metrics": ["accuracy"]}})
    assert "choose from accuracy, loss" in " ".join(selection_problems(parse_config(only_accuracy), CLASSIFICATION))


def test_the_carved_validation_split_is_stratified_fixed_and_never_shot(tiny_qwen, tmp_path):
    from sft.synthetic import sentiment_examples, write_splits

    numbered = [{**row, "text": f"{row['text']} #{index}"} for index, row in enumerate(sentiment_examples(90, 1))]
    unique = write_splits(tmp_path / "data", {"train": numbered, "test": sentiment_examples(6, seed=3)})
    raw = selection_config(unique, tiny_qwen, {"eval_every": 1, "validation_from_train": 30})
    raw["dataset"].pop("validation_split")
    config = parse_config(raw)
    first, second = prepare_data(config, seed=1), prepare_data(config, seed=2)
    assert first.validation["text"] == second.validation["text"]  # the same for every seed
    assert len(first.validation) == 30
    counts = {label: first.validation["label"].count(label) for label in first.labels}
    train = prepare_data(parse_config({**raw, "training": {"trainer_args": {}}}), SEED).train
    expected = {label: 30 * train["label"].count(label) / len(train) for label in first.labels}
    assert all(abs(counts[label] - expected[label]) <= 1 for label in counts), (counts, expected)
    for data in (first, second):
        assert not set(data.shots["text"]) & set(data.validation["text"])
        assert not set(data.train["text"]) & set(data.validation["text"])
    with pytest.raises(ConfigError, match="validation_from_train: 500 examples"):
        carve_validation(train, "label", first.labels, 500, task_for(config))


# -- training ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted_data(tmp_path_factory) -> Path:
    """Training and validation examples of the same kind, with negative and positive swapped in the
    validation split: the better the model fits its shots, the worse it does on validation, so the
    validation loss is best at the first evaluation and early stopping must keep that adapter."""
    from sft.synthetic import sentiment_examples, write_splits

    validation = [{**row, "label": FLIP[row["label"]]} for row in sentiment_examples(24, seed=2)]
    return write_splits(
        tmp_path_factory.mktemp("planted"),
        {"train": sentiment_examples(60, seed=1), "validation": validation, "test": sentiment_examples(12, seed=3)},
    )


CONSTANT = {"lr_scheduler_type": "constant", "learning_rate": 5e-3, "per_device_train_batch_size": 4}


@pytest.mark.slow
def test_early_stopping_keeps_the_adapter_of_the_best_evaluation(planted_data, tiny_qwen, tmp_path):
    """Validation peaks at the first evaluation (planted); training stops after `patience` worse ones and
    the kept adapter predicts exactly what the same training stopped at that step predicts. (A constant
    learning rate makes "the same schedule, stopped at step k" a run with max_steps = k.)"""
    training = {
        "eval_every": 2,
        "eval_unit": "steps",
        "metric": "loss",
        "early_stopping_patience": 2,
        "trainer_args": {**CONSTANT, "num_train_epochs": 8},
    }
    config = parse_config(selection_config(planted_data, tiny_qwen, training, shots=6))
    results = run_experiment(config, Run("stopped", SEED, tmp_path))
    selection = results["training"]["selection"]
    curve = selection["learning_curve"]
    assert [point["step"] for point in curve] == [2, 4, 6]  # best, then two without improvement
    losses = [point["validation_loss"] for point in curve]
    assert losses[0] < min(losses[1:]), losses
    assert selection["best_step"] == 2 and selection["best_value"] == losses[0]
    assert selection["stopped_early"] is True and results["training"]["train_steps"] == 6
    assert selection["metric"] == "loss" and selection["higher_is_better"] is False

    stopped_at_best = {**training, "trainer_args": {**training["trainer_args"], "max_steps": 2}}
    for key in ("eval_every", "eval_unit", "metric", "early_stopping_patience"):
        stopped_at_best.pop(key)
    reference_config = parse_config(selection_config(planted_data, tiny_qwen, stopped_at_best, shots=6))
    reference = run_experiment(reference_config, Run("reference", SEED, tmp_path))
    assert reference["training"]["train_steps"] == 2 and reference["training"]["selection"] is None
    kept = read_jsonl(Run("stopped", SEED, tmp_path).folder / "predictions.jsonl")
    expected = read_jsonl(Run("reference", SEED, tmp_path).folder / "predictions.jsonl")
    probabilities = [[row["probabilities"][label] for label in FLIP] for row in kept]
    np.testing.assert_allclose(probabilities, [[row["probabilities"][label] for label in FLIP] for row in expected])
    assert results["metrics"]["f1_macro"] == pytest.approx(reference["metrics"]["f1_macro"])


@pytest.mark.slow
@pytest.mark.parametrize("head", [True, False], ids=["head", "label_scoring"])
def test_the_learning_curve_is_what_the_final_evaluation_computes(sentiment_data, tiny_qwen, tmp_path, head):
    """Every epoch is evaluated; the best point of the curve equals `evaluate` of the saved adapter on the
    validation split (the final evaluation's code, reading the adapter from disk)."""
    training = {
        "eval_every": 1,
        "eval_examples": 12,
        "metric": "accuracy",
        "eval_loss": head,  # label scoring: without the loss pass
        "trainer_args": {**CONSTANT, "num_train_epochs": 3},
    }
    raw = selection_config(sentiment_data, tiny_qwen, training, head=head, shots=3)
    config = parse_config(raw)
    # the run's own adapter folder: the evaluation below changes dataset.test_split, which is in the
    # training key, so a shared adapter would not be found under the changed config's key
    run = Run("curve", SEED, tmp_path, share_training=False)
    results = run_experiment(config, run)
    selection = results["training"]["selection"]
    curve = selection["learning_curve"]
    steps_per_epoch = results["training"]["train_steps"] // 3
    assert [point["step"] for point in curve] == [steps_per_epoch * epoch for epoch in (1, 2, 3)]
    assert [point["epoch"] for point in curve] == [1.0, 2.0, 3.0]
    assert all(point["train_loss"] > 0 for point in curve)
    assert all((point["validation_loss"] > 0) if head else point["validation_loss"] is None for point in curve)
    accuracies = [point["metrics"]["accuracy"] for point in curve]
    best = curve[accuracies.index(max(accuracies))]  # the first of equal values
    assert selection["best_step"] == best["step"] and selection["stopped_early"] is False
    assert selection["eval_examples"] == 12 and selection["eval_seconds"] > 0

    # the test subset of max_n_test and the evaluation subset of eval_examples are the same 12 examples
    on_validation = {**raw["dataset"], "test_split": "validation", "max_n_test": 12}
    on_validation = parse_config(merge(raw, {"dataset": on_validation}))
    final = evaluate(on_validation, run)
    for key, value in best["metrics"].items():
        assert final["metrics"][key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.slow
def test_a_multilabel_evaluation_scores_its_subset_once_and_tunes_thresholds_on_it(tiny_qwen, tmp_path):
    """Multilabel: the task's own threshold tuning runs on the evaluation subset, which is scored once."""
    from sft.predictors import predictor_for
    from sft.predictors.base import Loaded
    from sft.synthetic import sentiment_examples, write_splits
    from sft.training.selection import selector_for

    def label_sets(count: int, seed: int) -> list[dict]:
        rows = sentiment_examples(2 * count, seed)
        return [
            {"text": f"{first['text']} and {second['text']}", "labels": sorted({first["label"], second["label"]})}
            for first, second in zip(rows[::2], rows[1::2])
        ]

    splits = {"train": label_sets(30, 1), "validation": label_sets(20, 2), "test": label_sets(4, 3)}
    raw = selection_config(write_splits(tmp_path / "data", splits), tiny_qwen, {"eval_every": 1, "eval_examples": 10})
    raw["dataset"]["task_type"], raw["prompting"]["output_column"] = "multilabel", "labels"
    config = parse_config(raw)
    task = task_for(config)
    predictor = predictor_for(config, task)
    data = prepare_data(config, SEED)
    loaded = predictor.load(config, task, data.labels, None, False)
    scored: list[int] = []

    def score_with(model):
        scorer = predictor.scorer(config, task, data, Loaded(model, loaded.tokenizer), SEED)
        return lambda split: scored.append(len(split)) or scorer(split)

    selector = selector_for(config, task, data, score_with)
    assert selector.metric == "f1_macro" and selector.higher_is_better
    metrics = selector.evaluate(loaded.model)
    assert scored == [10]
    assert {"f1_micro", "f1_macro", "subset_accuracy", "hamming_loss"} <= set(metrics)
    assert "per_label" not in metrics  # a table, not a number to compare
