"""What a predictor is: how a model is loaded, trained and read for one way of predicting.

Four predictors exist: label scoring (classification by the log-likelihood of each label), label-set
scoring (multilabel, by the likelihood of label sequences), generation, and a classification head.
Each is a module-level `Predictor` in its own module; `sft.predictors.predictor_for` picks one. A
predictor's `scorer` returns a function from a split to `Scores`, which the task (`sft.tasks`) turns
into predictions; everything a predictor produces comes back as a return value. Its `fixed_scorer`
scores new inputs with what a finished run fixed (`Fixed`), through the same scoring code: that is
how an exported model (`sft.serving`) predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sft.config import ExperimentConfig
    from sft.data.prepare import ExperimentData
    from sft.tasks.base import Scorer, Task
    from sft.training.common import Trained


@dataclass(frozen=True)
class Loaded:
    """A model ready to train or predict, and its tokenizer."""

    model: Any
    tokenizer: Any


@dataclass(frozen=True)
class Fixed:
    """What a finished run fixed for its test predictions, so new inputs are scored as its test examples
    were without its data: the label set, the in-context examples shown before every input (the run's
    fixed draw), the calibration's fitted parameters (results.json["calibration"]: method, prior, gamma) and a
    structured task's schema, which new answers are decoded under."""

    labels: list[str] | None
    icl_examples: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    schema: dict[str, Any] | None = None  # a structured task's JSON Schema (results.json["output_schema"])


# load(config, task, labels, adapter, trainable) -> Loaded
Load = Callable[["ExperimentConfig", "Task", "list[str] | None", "str | None", bool], Loaded]
# the predictor's scorer over the model being trained (evaluation during training)
ScorerOf = Callable[[Any], "Scorer"]
# train(config, task, data, loaded, seed, run_folder, score_with) -> Trained
Train = Callable[["ExperimentConfig", "Task", "ExperimentData", Loaded, int, Path, ScorerOf], "Trained"]
# scorer(config, task, data, loaded, seed) -> Scorer
MakeScorer = Callable[["ExperimentConfig", "Task", "ExperimentData", Loaded, int], "Scorer"]
# fixed_scorer(config, task, loaded, fixed) -> Scorer of new inputs (example dicts), nothing refitted
MakeFixedScorer = Callable[["ExperimentConfig", "Task", Loaded, Fixed], "Scorer"]


# preflight(config, task) -> problems: what `load` and `train` would refuse, found without loading weights
Preflight = Callable[["ExperimentConfig", "Task"], "list[str]"]


@dataclass(frozen=True)
class Predictor:
    name: str
    load: Load
    train: Train
    scorer: MakeScorer
    preflight: Preflight
    fixed_scorer: MakeFixedScorer

    def fit(
        self, config: ExperimentConfig, task: Task, data: ExperimentData, loaded: Loaded, seed: int, folder: Path
    ) -> Trained:
        """Train; evaluations during training (`training.eval_every`) read the model being trained with
        this predictor's own scorer, exactly as the final evaluation will."""

        def score_with(model: Any) -> Scorer:
            return self.scorer(config, task, data, Loaded(model, loaded.tokenizer), seed)

        return self.train(config, task, data, loaded, seed, folder, score_with)


def quiet_libraries() -> None:
    """Progress bars and info logs of datasets and transformers would drown the run log."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_warning()
