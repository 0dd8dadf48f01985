"""sft.data.prepare: loading splits from every kind of source, checking them against the config, sampling shots."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from helpers import classification_config

from sft.config import ConfigError, DatasetConfig, parse_config
from sft.data.prepare import data_problems, load_splits, prepare_data, sample_shots

LABELS = ["negative", "neutral", "positive"]
FEATURES = Features({"id": Value("int64"), "text": Value("string"), "label": Value("string")})


def rows(count: int, labels: list[str] = LABELS, start: int = 0) -> list[dict[str, Any]]:
    """`count` examples with unique ids and texts, labels cycling through `labels`."""
    return [
        {"id": start + i, "text": f"example number {start + i}", "label": labels[i % len(labels)]} for i in range(count)
    ]


def split(examples: list[dict[str, Any]]) -> Dataset:
    columns = {name: [example[name] for example in examples] for name in FEATURES}
    return Dataset.from_dict(columns, features=FEATURES)


def config(path: Any = "unused-data", **sections: dict[str, Any]):
    return parse_config(classification_config(Path(str(path)), Path("unused-model"), **sections))


def write_jsonl(path: Path, examples: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(example) + "\n" for example in examples), encoding="utf-8")
    return path


# -- load_splits -------------------------------------------------------------------------------------


def test_load_splits_from_data_folder(sentiment_data):
    splits = load_splits(DatasetConfig(path=str(sentiment_data)))
    assert sorted(splits) == ["test", "train", "validation"]
    assert {name: len(splits[name]) for name in splits} == {"train": 90, "validation": 30, "test": 24}
    for name in splits:
        assert splits[name].column_names == ["text", "label"]
    assert set(splits["train"]["label"]) == set(LABELS)


def test_load_splits_from_single_jsonl_file_gives_one_train_split(tmp_path):
    examples = rows(7)
    path = write_jsonl(tmp_path / "reviews.jsonl", examples)
    splits = load_splits(DatasetConfig(path=str(path)))
    assert list(splits) == ["train"]
    assert splits["train"]["text"] == [example["text"] for example in examples]
    assert splits["train"]["label"] == [example["label"] for example in examples]


def test_load_splits_from_single_csv_file_gives_one_train_split(tmp_path):
    examples = rows(5)
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "label"])
        writer.writeheader()
        writer.writerows(examples)
    splits = load_splits(DatasetConfig(path=str(path)))
    assert list(splits) == ["train"]
    assert splits["train"]["text"] == [example["text"] for example in examples]
    assert splits["train"]["id"] == list(range(5))


def test_load_splits_from_save_to_disk_folder(tmp_path):
    saved = DatasetDict({"train": split(rows(6)), "test": split(rows(3, start=100))})
    saved.save_to_disk(str(tmp_path / "saved"))
    splits = load_splits(DatasetConfig(path=str(tmp_path / "saved")))
    assert sorted(splits) == ["test", "train"]
    assert splits["train"]["id"] == list(range(6))
    assert splits["test"]["id"] == [100, 101, 102]


def test_load_splits_from_save_to_disk_single_dataset_is_train(tmp_path):
    split(rows(4)).save_to_disk(str(tmp_path / "single"))
    splits = load_splits(DatasetConfig(path=str(tmp_path / "single")))
    assert list(splits) == ["train"]
    assert splits["train"]["id"] == [0, 1, 2, 3]


def test_load_splits_passes_dataset_args(tmp_path):
    train = write_jsonl(tmp_path / "a.jsonl", rows(6))
    test = write_jsonl(tmp_path / "b.jsonl", rows(2, start=50))
    dataset = DatasetConfig(path="json", args={"data_files": {"train": str(train), "test": str(test)}})
    splits = load_splits(dataset)
    assert sorted(splits) == ["test", "train"]
    assert splits["train"]["id"] == list(range(6))
    assert splits["test"]["id"] == [50, 51]


def test_missing_hub_dataset_is_a_config_error_naming_dataset_path():
    missing = "nobody-sft-tests/this-dataset-does-not-exist"
    with pytest.raises(ConfigError) as caught:
        load_splits(DatasetConfig(path=missing))
    assert len(caught.value.messages) == 1
    message = caught.value.messages[0]
    assert message.startswith("dataset.path")
    assert missing in message


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


# -- data_problems -----------------------------------------------------------------------------------


def test_data_problems_reports_structural_problems_all_at_once():
    splits = DatasetDict({"train": split(rows(9)), "test": split([])})
    experiment = config(
        dataset={"validation_split": "dev", "shots": 1},
        prompting={"input_columns": ["text", "title"], "output_column": "label"},
    )
    problems = data_problems(experiment, splits)
    assert any("dataset.validation_split" in p and "'dev'" in p for p in problems), problems
    assert any("dataset.test_split" in p and "empty" in p for p in problems), problems
    missing_column = [p for p in problems if p.startswith("prompting:")]
    assert len(missing_column) == 2, problems  # once for each split that exists
    assert all("['title']" in p for p in missing_column)
    assert any("'train'" in p for p in missing_column) and any("'test'" in p for p in missing_column)
    with pytest.raises(ConfigError) as caught:
        prepare_data(experiment, seed=0, splits=splits)
    assert caught.value.messages == problems


def test_data_problems_reports_label_problems_all_at_once():
    train = split(
        [
            {"id": 0, "text": "a", "label": "negative"},
            {"id": 1, "text": "b", "label": "positive"},
            {"id": 2, "text": "c", "label": "mixed"},
        ]
    )
    test = split([{"id": 3, "text": "d", "label": "neutral"}, {"id": 4, "text": "e", "label": "angry"}])
    experiment = config(dataset={"shots": 1, "labels": LABELS})
    problems = data_problems(experiment, DatasetDict({"train": train, "test": test}))
    assert any("dataset.labels" in p and "'train'" in p and "mixed" in p for p in problems), problems
    assert any("dataset.labels" in p and "'test'" in p and "angry" in p for p in problems), problems
    assert any("dataset.shots" in p and "neutral" in p for p in problems), problems
    assert len(problems) == 3


def test_data_problems_missing_training_label_only_matters_when_the_train_split_is_used():
    train = split(rows(4, labels=["negative", "positive"]))
    test = split(rows(3, start=10))
    splits = DatasetDict({"train": train, "test": test})
    assert data_problems(config(dataset={"shots": 0}), splits) == []
    few_shot = data_problems(config(dataset={"shots": 1}), splits)
    assert len(few_shot) == 1
    assert "neutral" in few_shot[0]
    in_context = data_problems(config(inference={"icl_examples": 1}), splits)
    assert len(in_context) == 1
    assert "neutral" in in_context[0]


def test_data_problems_reports_structural_and_label_problems_together():
    """A missing validation split must not hide a label without training examples: the point of
    data_problems is that every problem is reported in one pass."""
    splits = DatasetDict({"train": split(rows(4, labels=["negative", "positive"])), "test": split(rows(3, start=10))})
    experiment = config(dataset={"shots": 1, "validation_split": "validation"})
    problems = data_problems(experiment, splits)
    assert any("dataset.validation_split" in p for p in problems), problems
    assert any("dataset.shots" in p and "neutral" in p for p in problems), problems


def test_data_problems_none_for_good_data(sentiment_data):
    experiment = config(sentiment_data, dataset={"shots": 2, "validation_split": "validation", "labels": LABELS})
    assert data_problems(experiment, load_splits(experiment.dataset)) == []


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
