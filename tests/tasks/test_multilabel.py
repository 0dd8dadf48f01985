"""Multi-label classification (sft.tasks.multilabel): data handling, thresholds, metrics and a whole run on a
tiny offline model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import icl_sampler, merge, multilabel_examples, training_sections
from typer.testing import CliRunner

from sft.cli import app
from sft.config import ConfigError, EvaluationConfig, parse_config
from sft.config.schema import THRESHOLD_EXAMPLES
from sft.data.prepare import load_splits, prepare_data
from sft.data.prompts import PromptBuilder
from sft.evaluation.metrics import MetricInputs, compute_metrics
from sft.evaluation.multilabel import binarize
from sft.experiment.run import run_experiment
from sft.results.files import read_jsonl
from sft.results.layout import Run
from sft.synthetic import write_splits
from sft.tasks import TASKS
from sft.tasks.base import Scores
from sft.tasks.multilabel import _best_cut, decide, thresholds_for, tune_thresholds

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="session")
def multilabel_data(assets) -> Path:
    return write_splits(
        assets / "multilabel",
        {
            "train": multilabel_examples(60, seed=1),
            "validation": multilabel_examples(16, seed=2),
            "test": multilabel_examples(12, seed=3),
        },
    )


def multilabel_config(data: Path, model: Path, **sections):
    raw = {
        "dataset": {"path": str(data), "task_type": "multilabel", "shots": 0, "validation_split": "validation"},
        "model": {"name": str(model)},
        "prompting": {
            "instruction": "Which sentiments does the review express?",
            "input_columns": ["text"],
            "output_column": "labels",
        },
        "inference": {"batch_size": 16},
    }
    return parse_config(merge(raw, sections))


# -- thresholds --------------------------------------------------------------------------------------------


def test_best_cut_by_hand():
    # scores sorted: 0.9 (pos), 0.8 (neg), 0.6 (pos), 0.3 (pos), 0.1 (neg); 3 positives
    scores = np.array([0.3, 0.9, 0.1, 0.6, 0.8])
    truth = np.array([1, 1, 0, 1, 0])
    # cut at 0.9: TP 1, F1 2/(1+3)=0.5; 0.8: 2/(2+3)=0.4; 0.6: 4/(3+3)=0.667; 0.3: 6/(4+3)=0.857; 0.1: 6/8=0.75
    threshold, f1 = _best_cut(scores, truth)
    assert threshold == 0.3
    assert math.isclose(f1, 6 / 7)


def test_best_cut_ties_go_to_the_highest_threshold_and_equal_scores_are_one_cut():
    # two equal scores cannot be split: predicting "0.5 or more" takes both
    threshold, f1 = _best_cut(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0]))
    assert threshold == 0.5 and math.isclose(f1, 2 / 3)
    # F1 2/3 when predicting only 0.9 (TP 1 of 1, 2 positives) and when predicting all four (TP 2 of 4)
    threshold, f1 = _best_cut(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 0, 1]))
    assert threshold == 0.9 and math.isclose(f1, 2 / 3)


def test_global_and_per_label_thresholds_by_hand():
    probabilities = np.array([[0.9, 0.2], [0.6, 0.3], [0.4, 0.1], [0.2, 0.25]])
    truth = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    per_label = tune_thresholds(probabilities, truth, "per_label")
    # label 0: cut at 0.6 is perfect; label 1: 0.3 (TP1 F1 2/3) vs 0.25 (TP2 of 2 predicted: F1 1.0)
    assert per_label.tolist() == [0.6, 0.25]
    # pooled: 0.9(1) 0.6(1) 0.4(0) 0.3(1) 0.25(1) 0.2(0,0) 0.1(0); 4 positives
    # F1 at 0.25: TP 4 of 5 predicted -> 8/9, the best
    assert tune_thresholds(probabilities, truth, "global").tolist() == [0.25, 0.25]
    assert decide(probabilities, per_label, ["a", "b"]) == [["a"], ["a", "b"], [], ["b"]]
    with pytest.raises(ValueError, match="per_label"):
        tune_thresholds(probabilities, truth, "best")


def test_label_without_positives_gets_a_threshold_above_every_score():
    threshold, f1 = _best_cut(np.array([0.2, 0.7]), np.array([0, 0]))
    assert threshold > 0.7 and f1 == 0.0


# -- metrics -----------------------------------------------------------------------------------------------


def test_multilabel_metrics_match_hand_computation():
    references = [["a"], ["a", "b"], ["c"], []]
    predictions = [["a"], ["b"], ["a", "c"], []]
    inputs = MetricInputs(
        references=[str(r) for r in references],
        predictions=[str(p) for p in predictions],
        labels=["a", "b", "c"],
        reference_sets=references,
        prediction_sets=predictions,
    )
    metrics = compute_metrics(inputs, TASKS["multilabel"].default_metrics, EvaluationConfig())
    # a: TP1 FP1 FN1 -> F1 0.5; b: TP1 -> 1.0; c: TP1 -> 1.0; micro TP3 FP1 FN1 -> 6/8
    assert math.isclose(metrics["f1_micro"], 0.75)
    assert math.isclose(metrics["f1_macro"], (0.5 + 1 + 1) / 3)
    # per example: 1, 2*1/(2+1)=2/3, 2*1/(1+2)=2/3, empty/empty=1
    assert math.isclose(metrics["f1_samples"], (1 + 2 / 3 + 2 / 3 + 1) / 4)
    assert math.isclose(metrics["subset_accuracy"], 0.5)
    assert math.isclose(metrics["hamming_loss"], 2 / 12)  # 'a' missed in row 2, 'a' extra in row 3
    assert metrics["per_label"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert metrics["per_label"]["c"]["support"] == 1


# -- data ---------------------------------------------------------------------------------------------------


def test_label_lists_are_put_in_label_order_and_shots_cover_every_label(multilabel_data, tiny_qwen):
    config = multilabel_config(multilabel_data, tiny_qwen, dataset={"shots": 3})
    data = prepare_data(config, seed=0)
    assert data.labels == LABELS
    for split in (data.train, data.test, data.validation):
        for labels in split["labels"]:
            assert labels == sorted(labels)  # label order is alphabetical here
    counts = binarize(data.shots["labels"], LABELS).sum(axis=0)
    assert (counts >= 3).all(), counts
    assert len(set(data.shots["text"])) == len(data.shots)  # no example taken twice


def test_explicit_label_order_orders_the_targets(multilabel_data, tiny_qwen):
    order = ["positive", "neutral", "negative"]
    config = multilabel_config(multilabel_data, tiny_qwen, dataset={"labels": order})
    data = prepare_data(config, seed=0)
    assert data.labels == order
    two = next(labels for labels in data.test["labels"] if len(labels) == 2)
    assert two == [label for label in order if label in two]


def test_training_target_joins_labels_with_the_separator(multilabel_data, tiny_qwen):
    from transformers import AutoTokenizer

    config = multilabel_config(multilabel_data, tiny_qwen, prompting={"label_separator": " | "})
    target = lambda value: TASKS["multilabel"].target_text(value, config.prompting)  # noqa: E731
    builder = PromptBuilder(AutoTokenizer.from_pretrained(tiny_qwen), config.prompting, target=target)
    assert builder.answer_text({"text": "x", "labels": ["negative", "positive"]}) == "negative | positive"


def test_in_context_examples_show_every_label_once(multilabel_data, tiny_qwen):
    config = multilabel_config(multilabel_data, tiny_qwen, inference={"icl_examples": 1})
    data = prepare_data(config, seed=0)
    sampler = icl_sampler(data.train, "labels", data.labels, seed=0, purpose="inference")
    for key in range(5):
        shown = sampler.sample(1, key=key)
        assert binarize([example["labels"] for example in shown], LABELS).max(axis=0).tolist() == [1, 1, 1]
        assert len({example["text"] for example in shown}) == len(shown)


def test_a_string_label_column_is_reported(sentiment_data, tiny_qwen):
    config = multilabel_config(sentiment_data, tiny_qwen, prompting={"output_column": "label"})
    with pytest.raises(ConfigError, match="multilabel needs a list of labels"):
        prepare_data(config, seed=0, splits=load_splits(config.dataset))


# -- generative scoring ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generative_run(multilabel_data, tiny_qwen, tmp_path_factory):
    config = multilabel_config(
        multilabel_data, tiny_qwen, **training_sections(shots=2, epochs=1), inference={"thresholds": "per_label"}
    )
    run = Run("multilabel", 0, tmp_path_factory.mktemp("results"))
    return config, run, run_experiment(config, run)


@pytest.mark.slow
def test_generative_multilabel_run_writes_sets_thresholds_and_metrics(generative_run, multilabel_data):
    _, run, results = generative_run
    assert results["task_type"] == "multilabel"
    assert set(results["thresholds"]) == set(LABELS)
    for key in ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "hamming_loss", "per_label"):
        assert key in results["metrics"]
    rows = read_jsonl(run.folder / "predictions.jsonl")
    test = read_jsonl(multilabel_data / "test.jsonl")
    assert len(rows) == len(test)
    for row, example in zip(rows, test):
        assert sorted(row["reference"]) == sorted(example["labels"])
        expected = [label for label in LABELS if row["probabilities"][label] >= results["thresholds"][label]]
        assert row["prediction"] == expected


def test_fixed_threshold_is_used_as_given(multilabel_data, tiny_qwen, tmp_path):
    config = multilabel_config(multilabel_data, tiny_qwen, inference={"thresholds": 0.01, "batch_size": 16})
    results = run_experiment(config, Run("fixed", 0, tmp_path))
    assert results["thresholds"] == dict.fromkeys(LABELS, 0.01)


# -- where thresholds are tuned -------------------------------------------------------------------------------


def test_without_validation_split_the_datasets_own_is_used_capped_and_recorded(
    multilabel_data, tiny_qwen, tmp_path, caplog
):
    raw = multilabel_config(multilabel_data, tiny_qwen, inference={"threshold_examples": 5}).model_dump(
        exclude_defaults=True
    )
    del raw["dataset"]["validation_split"]
    config = parse_config(raw)
    with caplog.at_level("INFO"):
        results = run_experiment(config, Run("implicit", 0, tmp_path))
    assert "tuning inference.thresholds 'global' on the dataset's 'validation' split" in caplog.text
    assert results["threshold_source"] == {
        "split": "validation", "examples": 5, "split_examples": 16, "chosen_by": "split name"
    }  # fmt: skip
    from sft.report.aggregate import aggregate

    _, markdown = aggregate(tmp_path)
    section = markdown.read_text().split("## Multilabel thresholds")[1]
    line = next(line for line in section.splitlines() if line.startswith("| implicit"))
    assert "split 'validation': 5 of 16 examples, picked by its name" in line


def test_fixed_thresholds_are_recorded_as_fixed(multilabel_data, tiny_qwen):
    config = multilabel_config(multilabel_data, tiny_qwen, inference={"thresholds": 0.3})
    data = prepare_data(config, seed=0)
    _, source = thresholds_for(config, data, lambda split: pytest.fail("fixed thresholds score nothing"))
    assert source == "fixed"


def test_threshold_examples_default_and_the_subset_is_the_same_for_every_seed(multilabel_data, tiny_qwen):
    assert parse_config(multilabel_config(multilabel_data, tiny_qwen).model_dump()).inference.threshold_examples == (
        THRESHOLD_EXAMPLES
    )
    config = multilabel_config(multilabel_data, tiny_qwen, inference={"threshold_examples": 6}, dataset={"shots": 2})
    scored = []

    def score(split):
        scored.append(split["text"])
        return Scores(np.full((len(split), len(LABELS)), 0.5))

    for seed in (0, 1):
        _, source = thresholds_for(config, prepare_data(config, seed=seed), score)
        assert source["examples"] == 6 and source["split_examples"] == 16 and source["chosen_by"] == "config"
    assert scored[0] == scored[1]


def test_tuned_thresholds_without_any_validation_split_stop_validate(tmp_path, tiny_qwen):
    data = write_splits(
        tmp_path / "data", {"train": multilabel_examples(8, seed=1), "test": multilabel_examples(4, seed=2)}
    )
    raw = multilabel_config(data, tiny_qwen).model_dump(exclude_defaults=True)
    del raw["dataset"]["validation_split"]
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(raw))
    result = CliRunner().invoke(app, ["validate", str(grid)])
    assert result.exit_code == 2
    message = result.output
    assert "dataset.validation_split" in message and "validation / dev / val" in message
    assert "inference.thresholds: 0.5" in message
