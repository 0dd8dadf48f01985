"""Calibration of label probabilities for in-context classification, each method as its paper defines it.

A language model scoring label names is biased toward some labels by the prompt itself (the
instruction, the in-context examples, their order, the label words). Each method estimates that
bias as a prior over the labels and divides it out:

- `contextual` (Zhao et al., 2021): the prior is the model's prediction for content-free inputs
  ("N/A", "", "[MASK]") put into the same prompt; q = normalize(diag(p_cf)^-1 p).
- `domain` (Fei et al., 2023): the content-free inputs are random strings of in-domain words taken
  from the evaluation texts, averaged over `num_estimations` strings; same rule.
- `batch` (Zhou et al., 2024): the prior is the mean prediction over the test batch;
  score = log p(y|x) - log mean_x p(y|x).
- `adjustable_batch`: score = log p(y|x) - gamma log prior, gamma chosen on labelled training examples.

Every method returns probabilities that sum to 1 over the labels; the prediction is their argmax
(the papers' decision rule). Fitting and applying are separate: a method fits a prior (and gamma),
records them in its details (results.json["calibration"]), and applies them with its rule in
`APPLY_RULES`; `apply_fitted` applies recorded parameters to new probabilities without refitting,
which is how an exported model (`sft.serving`) calibrates new inputs as its run did.
`CALIBRATIONS` is the registry: name -> function(probabilities, context,
config) -> `Calibrated`. The model is only reached through `CalibrationContext`, whose sources are
lazy, so a method pays only for the extra prompts it needs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sft.data.prompts import ICLSampler
from sft.scoring.registry import CALIBRATIONS
from sft.tasks.labels import as_text

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from datasets import Dataset

    from sft.config import CalibrationConfig, InferenceConfig
    from sft.data.prepare import ExperimentData
    from sft.data.prompts import PromptBuilder

_WORD = re.compile(r"\w+(?:['’-]\w+)*")  # unicode words; keeps "don't" and "well-made" whole


@dataclass
class Calibrated:
    probabilities: np.ndarray  # (examples, labels), every row sums to 1
    details: dict[str, Any] = field(default_factory=dict)  # recorded under results.json["calibration"]
    uncalibrated: np.ndarray | None = None  # the probabilities before calibration, when one ran


@dataclass
class CalibrationContext:
    """What a calibration may ask for beyond the test probabilities.

    `replaced(inputs)` returns label probabilities of the test prompts with their input columns replaced
    by each of `inputs` (one dict column -> text each), shape (contexts, len(inputs), labels): one
    context per test prompt (broadcast to the test set) or a single shared one. `labelled()` returns
    (probabilities, label indices) of labelled training examples prompted like the test examples.
    """

    labels: list[str]
    test_inputs: list[dict[str, str]]
    replaced: Callable[[list[dict[str, str]]], np.ndarray]
    labelled: Callable[[], tuple[np.ndarray, np.ndarray]]
    seed: int = 0


# -- formulas ---------------------------------------------------------------------------------------


def softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64: label log-likelihoods -> probabilities over the label set."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def normalize(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values / values.sum(axis=-1, keepdims=True)


def divide_prior(probabilities: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """q = normalize(diag(prior)^-1 p) row by row (Zhao et al.'s W = diag(p_cf)^-1, b = 0).

    The paper writes softmax(W p + b); its argmax is the same, but a softmax over probabilities would
    flatten them toward uniform, so the calibrated probabilities here are W p renormalized (the
    reference implementation's flaw was exactly that second softmax). `prior` broadcasts: (labels,) or
    one row per example.
    """
    return normalize(np.asarray(probabilities, dtype=np.float64) / prior)


def remove_log_prior(probabilities: np.ndarray, prior: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """softmax(log p(y|x) - gamma log prior(y)): batch calibration (gamma = 1) and its adjustable form."""
    return softmax(np.log(probabilities) - gamma * np.log(prior))


def mean_prior(probabilities: np.ndarray) -> np.ndarray:
    """The average prediction: the batch estimate of the contextual prior P(y | C)."""
    return normalize(np.asarray(probabilities, dtype=np.float64).mean(axis=0))


def choose_gamma(
    probabilities: np.ndarray, targets: np.ndarray, prior: np.ndarray, grid: list[float], metric: str
) -> tuple[float, dict[float, float]]:
    """The gamma of `grid` scoring best on labelled examples, and every gamma's score.

    Ties (common: gamma only matters where it flips a prediction) go to the middle of the best gammas,
    not to an end of the grid.
    """
    from sklearn.metrics import accuracy_score, f1_score

    targets = np.asarray(targets)
    labels = list(range(probabilities.shape[1]))
    scores = {}
    for gamma in grid:
        predicted = remove_log_prior(probabilities, prior, gamma).argmax(axis=1)
        if metric == "f1_macro":
            scores[gamma] = float(f1_score(targets, predicted, labels=labels, average="macro", zero_division=0))
        else:
            scores[gamma] = float(accuracy_score(targets, predicted))
    best_score = max(scores.values())
    best = sorted(gamma for gamma, score in scores.items() if np.isclose(score, best_score))
    return best[len(best) // 2], scores


def in_domain_strings(texts: list[dict[str, str]], count: int, seed: int) -> list[dict[str, str]]:
    """`count` random inputs of in-domain words (Fei et al.'s domain context).

    For each input column: words drawn at random from all words of that column in the evaluation texts
    (so frequent words are drawn more often), as many as its average length in words.
    """
    rng = np.random.default_rng(seed)
    columns = list(texts[0]) if texts else []
    words = {column: [w for text in texts for w in _WORD.findall(text[column])] for column in columns}
    lengths = {
        column: max(1, round(np.mean([len(_WORD.findall(text[column])) for text in texts]))) for column in columns
    }
    strings = []
    for _ in range(count):
        strings.append(
            {
                column: " ".join(rng.choice(words[column], size=lengths[column])) if words[column] else ""
                for column in columns
            }
        )
    return strings


def _prior_rows(replaced: np.ndarray) -> np.ndarray:
    """(contexts, replacements, labels) -> one prior per context: each prediction renormalized over the
    labels, then averaged over the replacements."""
    return normalize(normalize(replaced).mean(axis=1))


def _prior_summary(prior: np.ndarray, labels: list[str]) -> dict[str, float]:
    """A label -> probability dict of the prior, averaged over contexts when there is one per prompt."""
    mean = prior.mean(axis=0) if prior.ndim == 2 else prior
    return dict(zip(labels, (float(p) for p in mean)))


def _batch_prior(probabilities: np.ndarray, config: CalibrationConfig) -> tuple[np.ndarray, int]:
    used = probabilities if config.num_estimations is None else probabilities[: config.num_estimations]
    return mean_prior(used), len(used)


# -- registered methods ------------------------------------------------------------------------------


def _divide_by_replaced(
    probabilities: np.ndarray, context: CalibrationContext, inputs: list[dict[str, str]]
) -> tuple[np.ndarray, np.ndarray]:
    prior = _prior_rows(context.replaced(inputs))  # (1 or n, labels)
    return _apply_rule("divide", probabilities, prior), prior


# How a method applies its fitted prior (and gamma): a method's name -> its rule.
APPLY_RULES = {"contextual": "divide", "domain": "divide", "batch": "log_prior", "adjustable_batch": "log_prior"}


def _apply_rule(rule: str, probabilities: np.ndarray, prior: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    if rule == "divide":
        return divide_prior(probabilities, prior)
    return remove_log_prior(probabilities, prior, gamma)


def apply_fitted(probabilities: np.ndarray, fitted: dict[str, Any], labels: list[str]) -> np.ndarray:
    """Calibrate new probabilities with the parameters a calibration recorded (`Calibrated.details`:
    method, prior per label, gamma), without refitting. With one prior per test prompt
    (`prior_contexts` > 1) the recorded prior is their mean, so the result approximates the run's."""
    method = fitted.get("method")
    if method not in APPLY_RULES:
        raise ValueError(
            f"calibration {method!r} records no rule to apply its fitted parameters to new inputs; "
            f"exportable calibrations: {sorted(APPLY_RULES)}"
        )
    prior = np.array([fitted["prior"][label] for label in labels], dtype=np.float64)
    return _apply_rule(APPLY_RULES[method], probabilities, prior, fitted.get("gamma", 1.0))


def contextual(probabilities: np.ndarray, context: CalibrationContext, config: CalibrationConfig) -> Calibrated:
    """Zhao et al. (2021), Calibrate Before Use: p_cf from content-free inputs in the same prompt."""
    columns = list(context.test_inputs[0]) if context.test_inputs else []
    inputs = [{column: text for column in columns} for text in config.content_free_inputs]
    calibrated, prior = _divide_by_replaced(probabilities, context, inputs)
    details = {"content_free_inputs": list(config.content_free_inputs), "prior_contexts": len(prior)}
    return Calibrated(calibrated, {"prior": _prior_summary(prior, context.labels), **details})


def domain(probabilities: np.ndarray, context: CalibrationContext, config: CalibrationConfig) -> Calibrated:
    """Fei et al. (2023), domain-context calibration: p_cf from random strings of in-domain words."""
    count = config.domain_estimations()
    inputs = in_domain_strings(context.test_inputs, count, context.seed)
    calibrated, prior = _divide_by_replaced(probabilities, context, inputs)
    details = {"num_estimations": count, "example_input": inputs[0] if inputs else None, "prior_contexts": len(prior)}
    return Calibrated(calibrated, {"prior": _prior_summary(prior, context.labels), **details})


def batch(probabilities: np.ndarray, context: CalibrationContext, config: CalibrationConfig) -> Calibrated:
    """Zhou et al. (2024), Batch Calibration: the prior is the mean prediction over the test batch."""
    prior, used = _batch_prior(probabilities, config)
    details = {"prior": _prior_summary(prior, context.labels), "prior_examples": used}
    return Calibrated(_apply_rule(APPLY_RULES["batch"], probabilities, prior), details)


def adjustable_batch(probabilities: np.ndarray, context: CalibrationContext, config: CalibrationConfig) -> Calibrated:
    """Batch calibration with strength gamma, chosen on labelled training examples.

    Gamma is chosen by running the same procedure on the labelled batch (its own mean prediction as the
    prior) and picking the gamma of `gamma_grid` with the best `gamma_metric`; the test examples are
    then calibrated with the test-batch prior and that gamma.
    """
    labelled, targets = context.labelled()
    gamma, scores = choose_gamma(labelled, targets, mean_prior(labelled), config.gamma_grid, config.gamma_metric)
    prior, used = _batch_prior(probabilities, config)
    details = {
        "prior": _prior_summary(prior, context.labels),
        "prior_examples": used,
        "gamma": gamma,
        "gamma_metric": config.gamma_metric,
        "gamma_scores": {str(g): s for g, s in scores.items()},
        "labelled_examples": len(targets),
    }
    return Calibrated(_apply_rule(APPLY_RULES["adjustable_batch"], probabilities, prior, gamma), details)


def calibrate(config: CalibrationConfig, scores: Any, context: CalibrationContext) -> Calibrated:
    """Label probabilities of the test examples: softmax of the label scores over the label set, then the
    configured calibration (none when `calibration_fn` is None)."""
    probabilities = softmax(np.asarray(scores, dtype=np.float64))
    if config.calibration_fn is None:
        return Calibrated(probabilities)
    method = CALIBRATIONS.get(config.calibration_fn)
    result = method(probabilities, context, config)
    if not np.allclose(result.probabilities.sum(axis=1), 1.0):
        raise ValueError(f"calibration {config.calibration_fn!r} returned probabilities that do not sum to 1")
    changed = float(np.mean(result.probabilities.argmax(axis=1) != probabilities.argmax(axis=1)))
    result.details = {"method": config.calibration_fn, **result.details, "changed_predictions": changed}
    result.uncalibrated = probabilities
    return result


# -- prompts with replaced inputs, labelled prompts ---------------------------------------------------


def prompt_context(
    builder: PromptBuilder,
    sampler: ICLSampler,
    data: ExperimentData,
    split: Dataset,
    inference: InferenceConfig,
    score: Callable[[list[str]], Any],
    seed: int,
) -> CalibrationContext:
    """The calibration context of the prompts of `split` (the test split): extra prompts built by their
    own `builder`, with the same instruction and in-context examples, scored by their own `score`."""
    labels = data.labels or []
    columns = builder.config.input_columns
    values = {column: split[column] for column in columns}  # columnar: cheap even when calibration is off
    test_inputs = [{column: as_text(values[column][i]) for column in columns} for i in range(len(split))]
    args = inference.calibration_args
    calibration_seed = args.seed if args.seed is not None else seed
    shared = inference.icl_examples == 0 or inference.icl_fixed or not args.estimate_per_prompt

    def probabilities_of(prompts: list[str]) -> np.ndarray:
        # Identical prompts (a shared context) are scored once.
        unique = list(dict.fromkeys(prompts))
        log.info("Calibration: scoring %d extra prompts (%d test prompts)", len(unique), len(test_inputs))
        scored = softmax(np.asarray(score(unique), dtype=np.float64))
        row = {prompt: index for index, prompt in enumerate(unique)}
        return scored[[row[prompt] for prompt in prompts]]

    def replaced(inputs: list[dict[str, str]]) -> np.ndarray:
        keys = [0] if shared else range(len(test_inputs))  # key 0 is the fixed draw of in-context examples
        prompts: list[str] = []
        for key in keys:
            icl = sampler.sample(inference.icl_examples, key=key)
            prompts.extend(builder.prompt(replacement, icl) for replacement in inputs)
        return probabilities_of(prompts).reshape(len(keys), len(inputs), -1)

    def labelled() -> tuple[np.ndarray, np.ndarray]:
        pool = data.icl_pool
        if pool is None or len(pool) == 0:
            raise ValueError("adjustable_batch calibration needs labelled training examples (dataset.train_split)")
        rng = np.random.default_rng(calibration_seed)
        chosen = np.sort(rng.choice(len(pool), size=min(args.labelled_examples, len(pool)), replace=False))
        # Prompted like a test example (the fixed draw when icl_fixed, else a draw of their own), but an
        # example never appears among its own in-context examples.
        own = ICLSampler(pool, data.icl_groups, seed, purpose="calibration")
        prompts, targets = [], []
        for index in chosen.tolist():
            example = pool[index]
            icl_sampler, key = (sampler, 0) if inference.icl_fixed else (own, index)
            prompts.append(builder.prompt(example, icl_sampler.sample(inference.icl_examples, key=key, exclude=index)))
            targets.append(labels.index(example[builder.config.output_column]))
        return probabilities_of(prompts), np.asarray(targets)

    return CalibrationContext(labels, test_inputs, replaced, labelled, calibration_seed)
