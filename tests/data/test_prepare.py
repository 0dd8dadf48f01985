"""sft.data.prepare: class labels as names, sampling shots, the test subset, the in-context pool; the real data."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from helpers.data import LABELS, config, rows, split

from sft.config import ConfigError, parse_config
from sft.data.prepare import load_splits, prepare_data, sample_shots

# -- class labels ----------------------------------------------------------------------------------


def test_class_label_ids_become_names(tmp_path):
    # Names deliberately not in sorted order: id 0 is "positive", so sorting or str(id) would be caught.
    names = ["positive", "negative", "neutral"]
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    ids = [0, 1, 2, 0, 1, 2, 0, 1, 2, 1]
    train = Dataset.from_dict({"text": [f"train {i}" for i in range(len(ids))], "label": ids}, features=features)
    test = Dataset.from_dict({"text": ["t0", "t1", "t2", "t3"], "label": [2, 0, 0, 1]}, features=features)
    DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "classlabel"))

    experiment = config(tmp_path / "classlabel", dataset={"shots": 2})
    data = prepare_data(experiment, seed=1)
    assert data.labels == sorted(names)
    assert data.test["label"] == ["neutral", "positive", "positive", "negative"]
    assert data.train["label"] == [names[i] for i in ids]
    assert Counter(data.shots["label"]) == dict.fromkeys(names, 2)
    for example in data.shots:  # every shot keeps its own label
        index = int(example["text"].split()[1])
        assert example["label"] == names[ids[index]]

    ordered = config(tmp_path / "classlabel", dataset={"labels": names})
    assert prepare_data(ordered, seed=1).labels == names


# -- sample_shots ------------------------------------------------------------------------------------


@pytest.fixture
def train_split() -> Dataset:
    return split(rows(60))  # 20 examples per label


def test_sample_shots_takes_shots_per_label_without_replacement(train_split):
    for shots in (1, 5, 20):
        sampled = sample_shots(train_split, "label", LABELS, shots, seed=3)
        assert Counter(sampled["label"]) == dict.fromkeys(LABELS, shots)
        assert len(set(sampled["id"])) == len(sampled)
        for example in sampled:
            assert train_split[example["id"]] == example  # a real training example, unchanged


def test_sample_shots_is_deterministic_per_seed(train_split):
    first = sample_shots(train_split, "label", LABELS, 4, seed=7)["id"]
    again = sample_shots(train_split, "label", LABELS, 4, seed=7)["id"]
    other = sample_shots(train_split, "label", LABELS, 4, seed=8)["id"]
    assert first == again
    assert sorted(first) != sorted(other)


def test_sample_shots_label_with_too_few_examples_gives_all_and_warns(caplog):
    train = split([*rows(30, labels=["negative", "positive"]), {"id": 99, "text": "rare", "label": "neutral"}])
    with caplog.at_level(logging.WARNING, logger="sft.data.prepare"):
        sampled = sample_shots(train, "label", LABELS, 5, seed=0)
    assert Counter(sampled["label"]) == {"negative": 5, "positive": 5, "neutral": 1}
    assert 99 in sampled["id"]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "neutral" in warnings[0].getMessage()


def test_sample_shots_without_warning_when_every_label_has_enough(train_split, caplog):
    with caplog.at_level(logging.WARNING, logger="sft.data.prepare"):
        sample_shots(train_split, "label", LABELS, 20, seed=0)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_generation_shots_are_shots_in_total(train_split, caplog):
    sampled = sample_shots(train_split, "label", None, 7, seed=2)
    assert len(sampled) == 7
    assert len(set(sampled["id"])) == 7
    assert sample_shots(train_split, "label", None, 7, seed=2)["id"] == sampled["id"]
    assert sorted(sample_shots(train_split, "label", None, 7, seed=5)["id"]) != sorted(sampled["id"])
    with caplog.at_level(logging.WARNING, logger="sft.data.prepare"):
        everything = sample_shots(train_split, "label", None, 100, seed=2)
    assert sorted(everything["id"]) == list(range(60))
    assert any(record.levelno == logging.WARNING for record in caplog.records)


# -- prepare_data ------------------------------------------------------------------------------------


def test_max_n_test_picks_the_same_test_subset_for_every_seed(sentiment_data):
    experiment = config(sentiment_data, dataset={"max_n_test": 10, "shots": 2})
    full = load_splits(experiment.dataset)["test"]
    full_rows = list(zip(full["text"], full["label"]))
    subsets = []
    for seed in (0, 1, 2, 13):
        data = prepare_data(experiment, seed)
        assert len(data.test) == 10
        subsets.append(list(zip(data.test["text"], data.test["label"])))
    assert all(subset == subsets[0] for subset in subsets)
    assert all(row in full_rows for row in subsets[0])
    # the shots, unlike the test subset, do depend on the seed
    shots = [prepare_data(experiment, seed).shots["text"] for seed in (0, 1)]
    assert shots[0] != shots[1]


def test_max_n_test_larger_than_the_test_split_keeps_it_whole(sentiment_data):
    data = prepare_data(config(sentiment_data, dataset={"max_n_test": 1000}), seed=0)
    assert len(data.test) == 24


def test_labels_sorted_from_data_or_in_configured_order(sentiment_data):
    assert prepare_data(config(sentiment_data), seed=0).labels == LABELS
    order = ["positive", "negative", "neutral"]
    assert prepare_data(config(sentiment_data, dataset={"labels": order}), seed=0).labels == order


def test_zero_shot_has_no_shots_and_icl_pool_is_the_train_split(sentiment_data):
    data = prepare_data(config(sentiment_data, inference={"icl_examples": 1}), seed=0)
    assert data.shots is None
    assert data.train is not None and len(data.train) == 90
    assert data.icl_pool is data.train

    without_icl = prepare_data(config(sentiment_data), seed=0)
    assert without_icl.shots is None
    assert without_icl.icl_pool is without_icl.train


def test_few_shot_icl_pool_is_the_shots(sentiment_data):
    data = prepare_data(config(sentiment_data, dataset={"shots": 3}), seed=4)
    assert data.shots is not None
    assert data.icl_pool is data.shots
    assert len(data.train) == 90
    assert Counter(data.shots["label"]) == dict.fromkeys(LABELS, 3)
    train_rows = list(zip(data.train["text"], data.train["label"]))
    assert all(row in train_rows for row in zip(data.shots["text"], data.shots["label"]))


def test_validation_split_is_loaded_when_configured(sentiment_data):
    data = prepare_data(config(sentiment_data, dataset={"validation_split": "validation"}), seed=0)
    assert data.validation is not None and len(data.validation) == 30
    assert prepare_data(config(sentiment_data), seed=0).validation is None


# -- real data (../shared/data) ----------------------------------------------------------------------


def test_tweeteval_emotion(shared_data):
    folder = shared_data / "tweeteval" / "emotion"
    experiment = config(folder, dataset={"shots": 4, "max_n_test": 100, "validation_split": "validation"})
    data = prepare_data(experiment, seed=0)
    assert data.labels == ["anger", "joy", "optimism", "sadness"]
    assert (len(data.train), len(data.validation), len(data.test)) == (3257, 374, 100)
    for part in (data.train, data.validation, data.test, data.shots):
        assert set(part.column_names) == {"text", "label"}
    assert Counter(data.shots["label"]) == dict.fromkeys(data.labels, 4)
    assert set(data.test["label"]) <= set(data.labels)
    assert prepare_data(experiment, seed=1).shots["text"] != data.shots["text"]


def test_tweeteval_sentiment_uses_validation_for_shots(shared_data):
    folder = shared_data / "tweeteval" / "sentiment"
    experiment = config(folder, dataset={"shots": 2, "train_split": "validation", "max_n_test": 50})
    data = prepare_data(experiment, seed=0)
    assert data.labels == LABELS
    assert len(data.train) == 2000
    assert len(data.test) == 50
    assert Counter(data.shots["label"]) == dict.fromkeys(LABELS, 2)

    with pytest.raises(ConfigError) as caught:
        prepare_data(config(folder, dataset={"shots": 2}), seed=0)
    assert any(message.startswith("dataset.train_split") for message in caught.value.messages)


def test_multi30k_generation(shared_data):
    experiment = parse_config(
        {
            "dataset": {
                "path": str(shared_data / "multi30k"),
                "task_type": "generation",
                "shots": 8,
                "max_n_test": 20,
                "validation_split": "validation",
            },
            "model": {"name": "unused-model"},
            "prompting": {"instruction": "Translate into German.", "input_columns": ["en"], "output_column": "de"},
        }
    )
    data = prepare_data(experiment, seed=0)
    assert data.labels is None
    assert (len(data.train), len(data.validation), len(data.test)) == (29000, 1014, 20)
    assert len(data.shots) == 8
    for part in (data.train, data.validation, data.test, data.shots):
        assert set(part.column_names) == {"en", "de"}
    assert all(isinstance(text, str) and text for text in data.test["de"])
    assert prepare_data(experiment, seed=5).test["en"] == data.test["en"]
