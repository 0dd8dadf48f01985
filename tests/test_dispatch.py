"""Picking the task and the predictor: the one place that tells tasks and modes apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import classification_config, merge

from sft.config import parse_config
from sft.predictors import PREDICTORS, predictor_name
from sft.tasks import TASKS, task_for


@pytest.mark.parametrize(
    "task_type, head, expected",
    [
        ("classification", None, "label_scoring"),
        ("multilabel", None, "label_set_scoring"),
        ("generation", None, "generation"),
        ("classification", "classification", "classification_head"),
        ("multilabel", "classification", "classification_head"),
    ],
)
def test_each_task_and_mode_has_one_predictor(task_type, head, expected):
    raw = merge(
        classification_config(Path("data"), Path("model")),
        {"dataset": {"path": "data", "task_type": task_type}, "model": {"name": "model", "head": head}},
    )
    config = parse_config(raw)
    task = task_for(config)
    assert task.name == task_type
    assert predictor_name(config, task) == expected
    assert expected in PREDICTORS


def test_every_task_names_a_registered_generative_predictor_and_its_metrics():
    from sft.evaluation.metrics import METRICS

    for name, task in TASKS.items():
        assert task.name == name
        assert task.generative_predictor in PREDICTORS
        assert set(task.default_metrics) <= set(METRICS)
        assert task.headline_metric in task.table_metrics
    assert TASKS["generation"].head is None
    assert TASKS["classification"].head.problem_type == "single_label_classification"
    assert TASKS["multilabel"].head.problem_type == "multi_label_classification"
