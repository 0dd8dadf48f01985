"""Model selection during training: evaluate the model being trained on (a fixed subset of) the
validation split with the task's own metric, keep the adapter of the best evaluation in memory, stop
after `training.early_stopping_patience` evaluations without improvement, and put the best adapter
back when training ends, so the adapter saved (and predicted with) is the best one.

An evaluation is exactly the final evaluation on other examples: the predictor's scorer (fast label
scoring, label-set scoring, generation, or the head's own probabilities) and the task's prediction and
metric code (`sft.tasks.base.task_metrics`); multilabel thresholds are tuned by the task's code on the
same subset. The validation loss comes from the trainer's own evaluation loop over the same examples.

Evaluations leave training as it would have been without them: the random number generators are
restored afterwards, so the kept adapter equals the adapter of the same training stopped at its step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.config import ExperimentConfig
from sft.data.prepare import fixed_subset
from sft.evaluation.metrics import higher_is_better
from sft.tasks.base import VALIDATION_LOSS, selection_metric, task_metrics
from sft.training.batching import attention_of

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.data.prepare import ExperimentData
    from sft.tasks.base import Scorer, Task

log = logging.getLogger(__name__)

# the predictor's scorer over a model being trained
ScorerOf = Callable[[Any], "Scorer"]

# Watches every evaluation of the trainings started inside `observed` (a search's trial reports to its
# pruner, sft.search.trial): called with (step, value of the selection metric); True stops the training.
Observer = Callable[[int, float], bool]
_OBSERVER: ContextVar[Observer | None] = ContextVar("evaluation_observer", default=None)


@contextlib.contextmanager
def observed(observer: Observer) -> Iterator[None]:
    """Trainings started inside report each evaluation to `observer`, which may stop them."""
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


def eval_split(config: ExperimentConfig, data: ExperimentData) -> Dataset | None:
    """The validation examples evaluated during training; None when training does not evaluate."""
    training = config.training
    if training is None or not training.evaluates() or data.validation is None:
        return None
    # the same examples for every seed, so learning curves compare
    return fixed_subset(data.validation, training.eval_examples)


@dataclass(frozen=True)
class Selector:
    """How a model being trained is evaluated and how evaluations are compared."""

    config: ExperimentConfig
    task: Task
    data: ExperimentData  # the experiment's data with the evaluation subset as test (and validation) split
    score_with: ScorerOf
    metric: str
    higher_is_better: bool

    @property
    def split(self) -> Dataset:
        return self.data.test

    def evaluate(self, model: Any) -> dict[str, float]:
        """The task's single-number metrics of `model` on the evaluation subset, in eval mode."""
        was_training = model.training
        model.eval()
        scorer, scored = self.score_with(model), {}

        def score(split: Dataset) -> Any:
            # multilabel tunes its thresholds on the same subset it predicts: score it once
            key = split._fingerprint
            if key not in scored:
                scored[key] = scorer(split)
            return scored[key]

        try:
            prediction = self.task.predict(self.config, self.data, score)
        finally:
            model.train(was_training)
        metrics = task_metrics(self.config, self.task, prediction, self.data.labels)
        return {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))}

    def better(self, value: float, best: float | None) -> bool:
        """Strictly better than the best so far (a tie keeps the earlier adapter)."""
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best


def selector_for(config: ExperimentConfig, task: Task, data: ExperimentData, score_with: ScorerOf) -> Selector | None:
    """The selector of a training that evaluates (`training.eval_every`), else None."""
    split = eval_split(config, data)
    if split is None:
        return None
    metric = selection_metric(config, task)
    higher = False if metric == VALIDATION_LOSS else higher_is_better(metric)
    subset = dataclasses.replace(data, test=split, validation=split)
    return Selector(config, task, subset, score_with, metric, higher)


def evaluation_arguments(config: ExperimentConfig) -> dict[str, Any]:
    """Trainer arguments for the validation loss: batches of `inference.batch_size`, loss only. sft itself
    decides when to evaluate (the callback below), so the trainer's own eval strategy stays off."""
    return {"per_device_eval_batch_size": config.inference.batch_size, "prediction_loss_only": True}


def _rng_states() -> dict[str, Any]:
    import torch

    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: dict[str, Any]) -> None:
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def selection_callback(selector: Selector, scoring_attention: str | None = None) -> Any:
    """A transformers TrainerCallback that evaluates on `selector`'s schedule, keeps the best adapter and
    stops early; `outcome(model, steps)` afterwards restores the best adapter and returns the record.
    `scoring_attention`: the attention implementation the scorer runs on when training switched the
    model to another one (padding-free rows, `sft.training.batching`)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import TrainerCallback

    training = selector.config.training
    assert training is not None and training.eval_every is not None
    every, unit, patience = training.eval_every, training.eval_unit, training.early_stopping_patience
    with_loss = training.eval_loss
    observer = _OBSERVER.get()

    class ModelSelection(TrainerCallback):
        def __init__(self) -> None:
            self.curve: list[dict[str, Any]] = []
            self.losses: list[tuple[int, float]] = []  # (step, mean train loss since the previous log)
            self.best: dict[str, Any] | None = None
            self.best_state: dict[str, Any] | None = None
            self.best_ranks: Any = None
            self.since_best = 0
            self.stopped = False
            self.seconds = 0.0
            self.pending: dict[str, Any] | None = None  # RNG states while an evaluation sft asked for runs

        def _request(self, state: Any, control: Any, model: Any) -> None:
            control.should_log = True  # the train loss of the interval
            self.pending = pending = _rng_states()
            if with_loss:  # the trainer's evaluation loop computes the loss, then calls on_evaluate
                control.should_evaluate = True
            else:
                self._evaluate(state, control, model, None, pending)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if unit == "steps" and state.global_step % every == 0:
                self._request(state, control, model)

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            if unit == "epochs" and round(state.epoch) % every == 0:
                self._request(state, control, model)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append((state.global_step, float(logs["loss"])))

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            if self.pending is not None:  # else an evaluation the user's trainer_args asked for
                self._evaluate(state, control, model, metrics, self.pending)

        def _evaluate(
            self, state: Any, control: Any, model: Any, metrics: dict[str, float] | None, pending: dict[str, Any]
        ) -> None:
            """Evaluate, keep the adapter when it is the best so far, then put back the RNG states `pending`
            that the request saved (so that evaluating does not change the training's draws)."""
            started = time.time()
            with attention_of(model, scoring_attention):
                values = selector.evaluate(model)
            validation_loss = (metrics or {}).get("eval_loss")
            if validation_loss is not None:
                values[VALIDATION_LOSS] = float(validation_loss)
            point = {
                "step": state.global_step,
                "epoch": round(float(state.epoch), 4),
                "train_loss": None,  # from the trainer's logs, when training ends
                "validation_loss": values.get(VALIDATION_LOSS),
                "metrics": {key: value for key, value in values.items() if key != VALIDATION_LOSS},
            }
            self.curve.append(point)
            value = values[selector.metric]
            if selector.better(value, self.best["value"] if self.best else None):
                self.best = {"step": point["step"], "epoch": point["epoch"], "value": value}
                state_dict = get_peft_model_state_dict(model)
                self.best_state = {key: tensor.detach().to("cpu", copy=True) for key, tensor in state_dict.items()}
                # AdaLoRA's state dict is shaped by the rank pattern it fixes late in training: keep the one
                # this state was taken under, so restoring it resizes the layers to match (or not at all)
                self.best_ranks = copy.deepcopy(getattr(model.active_peft_config, "rank_pattern", None))
                self.since_best = 0
            else:
                self.since_best += 1
            assert self.best is not None  # better() takes the first evaluation
            log.info(
                "Validation at step %d (epoch %.2f): %s %.4f (best %.4f at step %d)",
                point["step"], point["epoch"], selector.metric, value, self.best["value"], self.best["step"],
            )  # fmt: skip
            if patience is not None and self.since_best >= patience and state.global_step < state.max_steps:
                log.info("No improvement of %s in %d evaluations: stopping early", selector.metric, patience)
                control.should_training_stop = True
                self.stopped = True
            if observer is not None and observer(point["step"], value) and state.global_step < state.max_steps:
                log.info("Stopped by the search's pruner at step %d", point["step"])
                control.should_training_stop = True
                self.stopped = True
            _restore_rng(pending)
            self.pending = None
            # the trainer's loss pass ran just before this callback
            self.seconds += time.time() - started + float((metrics or {}).get("eval_runtime", 0.0))

        def _train_loss(self, start: int, end: int) -> float | None:
            """The mean train loss of steps (start, end], from the losses the trainer logged (each the mean
            since the log before it)."""
            total, steps, previous = 0.0, 0, 0
            for step, loss in self.losses:
                if start < step <= end:
                    total, steps = total + loss * (step - previous), steps + step - previous
                previous = step
            return total / steps if steps else None

        def outcome(self, model: Any, steps: int) -> dict[str, Any]:
            """Put the best adapter back into `model`; the record results.json keeps under training.selection."""
            starts = [0, *(point["step"] for point in self.curve)]
            for start, point in zip(starts, self.curve):
                point["train_loss"] = self._train_loss(start, point["step"])
            if self.best_state is not None and self.best is not None and self.best["step"] != steps:
                if hasattr(model.active_peft_config, "rank_pattern"):
                    model.active_peft_config.rank_pattern = self.best_ranks
                set_peft_model_state_dict(model, self.best_state)
                best = self.best
                log.info("Kept the adapter of step %d (%s %.4f)", best["step"], selector.metric, best["value"])
            return {
                "metric": selector.metric,
                "higher_is_better": selector.higher_is_better,
                "eval_examples": len(selector.split),
                "best_step": self.best["step"] if self.best else None,
                "best_epoch": self.best["epoch"] if self.best else None,
                "best_value": self.best["value"] if self.best else None,
                "stopped_early": self.stopped,
                "evaluations": len(self.curve),
                "eval_seconds": self.seconds,
                "learning_curve": self.curve,
            }

    return ModelSelection()
