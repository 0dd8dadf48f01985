"""Predictors: one module per way of predicting (label scoring, label-set scoring, generation, a
classification head), each a module-level `Predictor` (`sft.predictors.base`). `predictor_for` is the
one place that picks a predictor; the registry imports a predictor's module (and torch) only when it
is picked. What each predictor accepts (`Traits`) is the registry's metadata, readable without that
import: the whole-grid checks (`sft.experiment.checks`) ask it instead of comparing names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sft.registry import Registry

if TYPE_CHECKING:
    from sft.config import ExperimentConfig
    from sft.predictors.base import Predictor
    from sft.tasks.base import Task


@dataclass(frozen=True)
class Traits:
    """What a predictor reads from a config, so that a setting it would ignore is refused up front."""

    trainer_arguments: str = "trl.SFTConfig"  # the class `training.trainer_args` are passed to
    lora_task_type: str = "CAUSAL_LM"  # the PEFT task type of its adapter
    in_context: bool = True  # shows in-context examples (`inference.icl_examples`, `training.icl_examples`)
    calibrates: bool = False  # applies `inference.calibration_args`
    normalizes: bool = False  # applies `inference.normalization`
    generates: bool = False  # passes `inference.generation_args` to model.generate
    head: bool = False  # trains and reads the task's head (`Task.head`)
    class_weights: bool = False  # weighs its loss by `training.class_weights`
    # takes a PEFT initialization that rewrites the base weights (pissa_niter_<n>, pissa_residual, olora)
    rewritten_base: bool = True


PREDICTORS = Registry("predictor")
PREDICTORS.add(
    "label_scoring", "sft.predictors.label_scoring:LABEL_SCORING", traits=Traits(calibrates=True, normalizes=True)
)
PREDICTORS.add("label_set_scoring", "sft.predictors.label_set_scoring:LABEL_SET_SCORING", traits=Traits())
PREDICTORS.add("generation", "sft.predictors.generation:GENERATION", traits=Traits(generates=True))
# PEFT cannot convert a base-rewriting adapter back onto the original weights when the head is in
# modules_to_save, so such a head adapter would not reload on the untouched checkpoint.
PREDICTORS.add(
    "classification_head",
    "sft.predictors.head:CLASSIFICATION_HEAD",
    traits=Traits(
        trainer_arguments="transformers.TrainingArguments",
        lora_task_type="SEQ_CLS",
        in_context=False,
        head=True,
        class_weights=True,
        rewritten_base=False,
    ),
)

# model.head -> the predictor of that head
HEAD_PREDICTORS = {"classification": "classification_head"}


def predictor_name(config: ExperimentConfig, task: Task) -> str:
    """The head's predictor in head mode, else the task's generative one."""
    return HEAD_PREDICTORS[config.model.head] if config.model.head else task.generative_predictor


def predictor_for(config: ExperimentConfig, task: Task) -> Predictor:
    return PREDICTORS.get(predictor_name(config, task))


def traits_of(name: str) -> Traits:
    """What the predictor `name` reads from a config (no import of the predictor)."""
    traits: Traits = PREDICTORS.info(name)["traits"]
    return traits
