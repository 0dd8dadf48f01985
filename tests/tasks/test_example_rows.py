"""sft.tasks.base.example_rows: what every prediction row starts with."""

from __future__ import annotations

from datasets import Dataset

from sft.config.schema import PromptingConfig
from sft.tasks.base import example_rows


def test_prediction_rows_keep_the_cluster_column_only_when_one_is_set():
    split = Dataset.from_list(
        [{"text": "a", "author": "x", "label": "pos"}, {"text": "b", "author": "y", "label": "neg"}]
    )
    prompting = PromptingConfig(instruction="Classify.", input_columns=["text"], output_column="label")
    assert example_rows(split, prompting, str) == [{"text": "a", "reference": "pos"}, {"text": "b", "reference": "neg"}]
    clustered = example_rows(split, prompting, str, "author")
    assert [row["author"] for row in clustered] == ["x", "y"] and clustered[0]["reference"] == "pos"
    assert example_rows(split, prompting, str, "text") == example_rows(split, prompting, str)  # an input already
