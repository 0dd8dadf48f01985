"""Tasks: one module per task type (classification, multilabel, generation, structured), each a module-level
object implementing `sft.tasks.base.Task`. `task_for` is the one place that picks a task; a fourth
task is one new module and one line here. Importing this package imports no torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sft.tasks.base import Prediction, Scores, Task
from sft.tasks.classification import CLASSIFICATION
from sft.tasks.generation import GENERATION
from sft.tasks.multilabel import MULTILABEL
from sft.tasks.structured import STRUCTURED

if TYPE_CHECKING:
    from sft.config import ExperimentConfig

TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, MULTILABEL, GENERATION, STRUCTURED)}

__all__ = ["TASKS", "Prediction", "Scores", "Task", "task_for", "task_named"]


def task_named(name: str) -> Task:
    """The task of a `dataset.task_type` value (also as results.json records it)."""
    return TASKS[name]


def task_for(config: ExperimentConfig) -> Task:
    return TASKS[config.dataset.task_type]
