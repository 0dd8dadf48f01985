"""Predictors: one module per way of predicting (label scoring, label-set scoring, generation, a
classification head), each a module-level `Predictor` (`sft.predictors.base`). `predictor_for` is the
one place that picks a predictor; the registry imports a predictor's module (and torch) only when it
is picked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sft.registry import Registry

if TYPE_CHECKING:
    from sft.config import ExperimentConfig
    from sft.predictors.base import Predictor
    from sft.tasks.base import Task

PREDICTORS = Registry("predictor")
PREDICTORS.add("label_scoring", "sft.predictors.label_scoring:LABEL_SCORING")
PREDICTORS.add("label_set_scoring", "sft.predictors.label_set_scoring:LABEL_SET_SCORING")
PREDICTORS.add("generation", "sft.predictors.generation:GENERATION")
PREDICTORS.add("classification_head", "sft.predictors.head:CLASSIFICATION_HEAD")

# model.head -> the predictor of that head
HEAD_PREDICTORS = {"classification": "classification_head"}


def predictor_name(config: ExperimentConfig, task: Task) -> str:
    """The head's predictor in head mode, else the task's generative one."""
    return HEAD_PREDICTORS[config.model.head] if config.model.head else task.generative_predictor


def predictor_for(config: ExperimentConfig, task: Task) -> Predictor:
    return PREDICTORS.get(predictor_name(config, task))
