"""sft.data.splits: loading splits from any kind of source; checking them against the config, every problem at once."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from datasets import DatasetDict
from helpers.data import LABELS, config, rows, split

from sft.config import ConfigError, DatasetConfig
from sft.data.prepare import prepare_data
from sft.data.splits import data_problems, load_splits


def write_jsonl(path: Path, examples: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(example) + "\n" for example in examples), encoding="utf-8")
    return path


# -- load_splits -----------------------------------------------------------------------------------


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


# -- data_problems ---------------------------------------------------------------------------------


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


def test_a_cluster_column_not_in_the_test_split_is_a_problem():
    splits = DatasetDict({"train": split(rows(9)), "test": split(rows(6))})
    experiment = config(dataset={"shots": 1}, evaluation={"cluster_column": "author"})
    problems = data_problems(experiment, splits)
    assert [p for p in problems if p.startswith("evaluation.cluster_column: column 'author' not in split 'test'")]
    assert not data_problems(config(dataset={"shots": 1}, evaluation={"cluster_column": "id"}), splits)
