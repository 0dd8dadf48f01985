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


def test_every_predictor_says_what_it_reads_and_a_head_needs_a_task_with_one():
    from sft.predictors import Traits, traits_of

    for name in PREDICTORS:
        assert isinstance(traits_of(name), Traits)
    for name, task in TASKS.items():
        generative = traits_of(task.generative_predictor)
        assert not generative.head  # the generative mode of every task reads no head
        assert (task.head is not None) == (name not in ("generation", "structured"))  # the two that generate
    assert traits_of("classification_head").head


@pytest.mark.parametrize(
    "task_type, thresholds, expected",
    [("multilabel", "global", True), ("multilabel", "per_label", True), ("multilabel", 0.5, False),
     ("classification", "global", False), ("generation", "global", False)],
)  # fmt: skip
def test_the_task_says_whether_it_tunes_thresholds(task_type, thresholds, expected):
    from sft.config import InferenceConfig

    assert TASKS[task_type].tunes_thresholds(InferenceConfig(thresholds=thresholds)) is expected


def test_executor_traits_and_options_live_in_the_registry():
    """Each executor's options type and traits are its registry entry's metadata; no executor takes
    arguments it ignores (no **kwargs), so one executor's settings never pass silently to another."""
    import inspect

    from sft.runner.executors import EXECUTORS, options_type, places_gpus

    built_in = ("forkserver", "subprocess", "ray", "slurm")
    assert {name: places_gpus(name) for name in built_in} == {
        "forkserver": False, "subprocess": False, "ray": True, "slurm": True,
    }  # fmt: skip
    for name in built_in:
        kind = options_type(name)
        if kind is not None:
            assert not kind().given() and kind().problems(False) == []
        parameters = inspect.signature(EXECUTORS.get(name).__init__).parameters.values()
        assert all(parameter.kind != inspect.Parameter.VAR_KEYWORD for parameter in parameters), name
        assert len(parameters) == (2 if kind is None else 3), name  # self, the context and its own options
