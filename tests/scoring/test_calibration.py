"""sft.scoring.calibration: each formula on hand-computed numbers, bias removal on planted biases, prompts with replaced
inputs, config errors, and contextual/batch calibration end to end through run_experiment."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import classification_config, icl_sampler

from sft.config import CalibrationConfig, ConfigError, parse_config
from sft.experiment.checks import checked_config
from sft.scoring.calibration import (
    CALIBRATIONS,
    CalibrationContext,
    apply_fitted,
    calibrate,
    choose_gamma,
    in_domain_strings,
    prompt_context,
    remove_log_prior,
    softmax,
)

LABELS = ["negative", "neutral", "positive"]


def context(
    replaced=None, labelled=None, test_inputs: list[dict[str, str]] | None = None, labels=("a", "b")
) -> CalibrationContext:
    def unavailable(*_):
        raise AssertionError("this calibration must not ask for it")

    return CalibrationContext(
        labels=list(labels),
        test_inputs=test_inputs or [{"text": "x"}],
        replaced=replaced or unavailable,
        labelled=labelled or unavailable,
        seed=0,
    )


def config(**values) -> CalibrationConfig:
    return CalibrationConfig(**values)


def as_scores(probabilities) -> np.ndarray:
    """Log-probabilities whose softmax over the labels is `probabilities`."""
    return np.log(np.asarray(probabilities, dtype=np.float64))


# -- formulas on hand-computed inputs -----------------------------------------------------------------


def test_contextual_divides_by_the_averaged_content_free_prediction():
    seen = []

    def replaced(inputs):
        seen.append(inputs)
        # two content-free predictions, unnormalized: [0.4, 0.1] -> [0.8, 0.2]; [0.06, 0.04] -> [0.6, 0.4]
        return np.array([[[0.4, 0.1], [0.06, 0.04]]])

    result = calibrate(
        config(calibration_fn="contextual", content_free_inputs=["N/A", "[MASK]"]),
        as_scores([[0.6, 0.4], [0.9, 0.1]]),
        context(replaced),
    )
    assert seen == [[{"text": "N/A"}, {"text": "[MASK]"}]]
    # p_cf = mean([0.8, 0.2], [0.6, 0.4]) = [0.7, 0.3] (each renormalized before averaging, as the paper says;
    # averaging first would give [0.767, 0.233]).
    assert result.details["prior"] == pytest.approx({"a": 0.7, "b": 0.3})
    # W p = [0.6 / 0.7, 0.4 / 0.3] = [6/7, 4/3] -> [18/46, 28/46]; [0.9 / 0.7, 0.1 / 0.3] = [9/7, 1/3] -> [27/34, 7/34]
    assert result.probabilities == pytest.approx(np.array([[9 / 23, 14 / 23], [27 / 34, 7 / 34]]))
    assert result.uncalibrated == pytest.approx(np.array([[0.6, 0.4], [0.9, 0.1]]))
    assert result.details["method"] == "contextual"
    assert result.details["changed_predictions"] == 0.5  # the first example flips to "b"


def test_contextual_with_one_prior_per_prompt():
    """A prior per test prompt (per-example in-context examples) calibrates each row with its own."""
    priors = np.array([[[0.5, 0.5]], [[0.8, 0.2]]])  # (contexts, content-free inputs, labels)
    result = calibrate(
        config(calibration_fn="contextual", content_free_inputs=["N/A"]),
        as_scores([[0.6, 0.4], [0.6, 0.4]]),
        context(lambda inputs: priors, test_inputs=[{"text": "x"}, {"text": "y"}]),
    )
    # row 1 unchanged (uniform prior); row 2: [0.6 / 0.8, 0.4 / 0.2] = [0.75, 2] -> [3/11, 8/11]
    assert result.probabilities == pytest.approx(np.array([[0.6, 0.4], [3 / 11, 8 / 11]]))
    assert result.details["prior"] == pytest.approx({"a": 0.65, "b": 0.35})  # the mean over prompts
    assert result.details["prior_contexts"] == 2


def test_domain_uses_random_in_domain_strings_and_the_same_rule():
    texts = [{"text": "good pen, really good"}, {"text": "bad lamp"}, {"text": "the lamp is fine"}]
    seen = []

    def replaced(inputs):
        seen.append(inputs)
        return np.array([[[0.8, 0.2]] * len(inputs)])

    result = calibrate(
        config(calibration_fn="domain", num_estimations=5),
        as_scores([[0.6, 0.4]]),
        context(replaced, test_inputs=texts),
    )
    assert len(seen[0]) == 5
    assert seen[0] == in_domain_strings(texts, 5, seed=0)  # seeded: the same strings every time
    # [0.6 / 0.8, 0.4 / 0.2] = [0.75, 2] -> [3/11, 8/11]
    assert result.probabilities == pytest.approx(np.array([[3 / 11, 8 / 11]]))
    assert result.details["num_estimations"] == 5


def test_domain_estimates_twenty_strings_by_default():
    result = calibrate(
        config(calibration_fn="domain"),
        as_scores([[0.6, 0.4]]),
        context(lambda inputs: np.full((1, len(inputs), 2), 0.5)),
    )
    assert result.details["num_estimations"] == 20


def test_in_domain_strings_draw_test_words_at_the_average_length():
    texts = [
        {"premise": "the cat sat on the mat", "hypothesis": "a cat"},  # 6 and 2 words
        {"premise": "dogs don't bark", "hypothesis": "well-made noise, loud"},  # 3 and 3 words
    ]
    strings = in_domain_strings(texts, 50, seed=3)
    vocabulary = {
        "premise": {"the", "cat", "sat", "on", "mat", "dogs", "don't", "bark"},
        "hypothesis": {"a", "cat", "well-made", "noise", "loud"},
    }
    assert len(strings) == 50
    for string in strings:
        assert set(string) == {"premise", "hypothesis"}
        assert len(string["premise"].split()) == 4  # round((6 + 3) / 2) = round(4.5) = 4 (banker's rounding)
        assert len(string["hypothesis"].split()) == round((2 + 3) / 2)
        for column, text in string.items():
            assert set(text.split()) <= vocabulary[column]
    assert len({s["premise"] for s in strings}) > 10  # random, not one string repeated
    assert in_domain_strings(texts, 50, seed=3) == strings
    assert in_domain_strings(texts, 50, seed=4) != strings


def test_batch_removes_the_mean_prediction_in_log_space():
    probabilities = [[0.9, 0.1], [0.5, 0.5]]
    result = calibrate(config(calibration_fn="batch"), as_scores(probabilities), context())
    # prior = [0.7, 0.3]; exp(log p - log prior) renormalized: [9/7, 1/3] -> [27/34, 7/34]; [5/7, 5/3] -> [0.3, 0.7]
    assert result.details["prior"] == pytest.approx({"a": 0.7, "b": 0.3})
    assert result.probabilities == pytest.approx(np.array([[27 / 34, 7 / 34], [0.3, 0.7]]))
    assert result.details["prior_examples"] == 2


def test_batch_prior_from_the_first_examples():
    probabilities = [[0.9, 0.1], [0.5, 0.5]]
    result = calibrate(config(calibration_fn="batch", num_estimations=1), as_scores(probabilities), context())
    # prior = [0.9, 0.1]: [1, 1] -> [0.5, 0.5]; [5/9, 5] -> [0.1, 0.9]
    assert result.probabilities == pytest.approx(np.array([[0.5, 0.5], [0.1, 0.9]]))
    assert result.details["prior_examples"] == 1


def test_adjustable_strength_interpolates_between_none_and_batch():
    p, prior = np.array([[0.9, 0.1]]), np.array([0.7, 0.3])
    assert remove_log_prior(p, prior, 0.0) == pytest.approx(p)
    assert remove_log_prior(p, prior, 1.0) == pytest.approx(np.array([[27 / 34, 7 / 34]]))
    # gamma = 0.5: [0.9 / sqrt(0.7), 0.1 / sqrt(0.3)] renormalized
    half = np.array([0.9 / math.sqrt(0.7), 0.1 / math.sqrt(0.3)])
    assert remove_log_prior(p, prior, 0.5) == pytest.approx((half / half.sum())[None])


def test_choose_gamma_takes_the_best_and_the_middle_of_ties():
    # Labelled: two examples of "b" predicted [0.6, 0.4]; prior [0.6, 0.4]. Gamma < 1: both predicted "a"
    # (accuracy 0); gamma = 1 ties (argmax picks "a"); gamma > 1 turns both to "b" (accuracy 1).
    probabilities = np.array([[0.6, 0.4], [0.6, 0.4]])
    gamma, scores = choose_gamma(
        probabilities, np.array([1, 1]), np.array([0.6, 0.4]), [0.0, 0.5, 1.5, 2.0, 3.0], "accuracy"
    )
    assert scores == {0.0: 0.0, 0.5: 0.0, 1.5: 1.0, 2.0: 1.0, 3.0: 1.0}
    assert gamma == 2.0  # the middle of the best gammas


def test_no_calibration_is_the_softmax_of_the_scores():
    scores = np.array([[-1.0, -2.0, -3.0], [-0.5, -0.5, -4.0]])
    result = calibrate(config(), scores, context(labels=LABELS))
    assert result.probabilities == pytest.approx(np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True))
    assert result.details == {}
    assert result.uncalibrated is None


# -- planted biases -----------------------------------------------------------------------------------

KEYWORDS = {0: "awful", 1: "okay", 2: "great"}
FILLER = ["the", "pen", "lamp", "desk", "chair", "was", "is", "very", "quite", "this", "that", "it", "my"]


class BiasedScorer:
    """A synthetic classifier: log-likelihood = `bias` + `signal` for the label whose keyword the text has +
    noise. Content-free and random inputs carry the bias and whatever keywords they happen to contain."""

    def __init__(self, bias: list[float], signal: float = 1.0, noise: float = 0.5, seed: int = 0):
        self.bias, self.signal, self.noise = np.array(bias), signal, noise
        self.rng = np.random.default_rng(seed)

    def scores(self, texts: list[str]) -> np.ndarray:
        found = np.array([[KEYWORDS[k] in text.split() for k in sorted(KEYWORDS)] for text in texts], dtype=float)
        return self.bias + self.signal * found + self.noise * self.rng.standard_normal((len(texts), len(KEYWORDS)))

    def probabilities(self, inputs: list[dict[str, str]]) -> np.ndarray:
        return softmax(self.scores([item["text"] for item in inputs]))


def planted(n: int, seed: int, weights=(1 / 3, 1 / 3, 1 / 3)) -> tuple[list[dict[str, str]], np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.choice(3, size=n, p=weights)
    texts = [
        {"text": " ".join([*rng.choice(FILLER, size=4), KEYWORDS[int(t)], *rng.choice(FILLER, size=3)])}
        for t in targets
    ]
    return texts, targets


def scorer_context(scorer: BiasedScorer, texts, labelled_weights=(1 / 3, 1 / 3, 1 / 3)) -> CalibrationContext:
    def labelled():
        inputs, targets = planted(300, seed=99, weights=labelled_weights)
        return scorer.probabilities(inputs), targets

    return CalibrationContext(
        labels=LABELS,
        test_inputs=texts,
        replaced=lambda inputs: scorer.probabilities(inputs)[None],
        labelled=labelled,
        seed=0,
    )


def accuracy(probabilities: np.ndarray, targets: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == targets).mean())


@pytest.mark.parametrize("method", sorted(CALIBRATIONS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_method_removes_a_planted_bias(method, seed):
    texts, targets = planted(600, seed=seed)
    unbiased = accuracy(BiasedScorer([0.0, 0.0, 0.0], seed=seed + 4).probabilities(texts), targets)
    scorer = BiasedScorer([1.5, 0.0, 0.0], seed=seed + 4)  # the same noise, plus a strong pull toward label 0
    scores = scorer.scores([t["text"] for t in texts])
    biased = accuracy(softmax(scores), targets)
    result = calibrate(config(calibration_fn=method), scores, scorer_context(scorer, texts))
    calibrated = accuracy(result.probabilities, targets)
    assert biased < unbiased - 0.3  # the bias does hurt
    # Most of the lost accuracy comes back (contextual's prior rests on three noisy inputs, so not all).
    assert calibrated >= biased + 0.65 * (unbiased - biased), (method, biased, calibrated, unbiased)
    assert np.allclose(result.probabilities.sum(axis=1), 1.0)
    assert (result.probabilities > 0).all()
    prior = result.details["prior"]
    assert max(prior, key=prior.get) == "negative"  # the estimated prior found the planted bias
    assert sum(prior.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("method", sorted(CALIBRATIONS))
def test_recorded_parameters_calibrate_new_inputs_as_the_run_did(method):
    """apply_fitted with a run's details (what results.json and an export record) reproduces its calibrated
    probabilities without refitting: for the test batch itself, and for new inputs scored later."""
    texts, _ = planted(200, seed=7)
    scorer = BiasedScorer([1.5, 0.0, 0.0], seed=8)
    scores = scorer.scores([t["text"] for t in texts])
    result = calibrate(config(calibration_fn=method), scores, scorer_context(scorer, texts))
    recorded = json.loads(json.dumps(result.details))  # as results.json stores them
    fitted = apply_fitted(softmax(scores), recorded, LABELS)
    np.testing.assert_allclose(fitted, result.probabilities, atol=1e-12)
    one_by_one = np.concatenate([apply_fitted(softmax(scores[i : i + 1]), recorded, LABELS) for i in range(5)])
    np.testing.assert_allclose(one_by_one, result.probabilities[:5], atol=1e-12)


def test_a_calibration_without_a_rule_cannot_be_applied_to_new_inputs():
    with pytest.raises(ValueError, match="exportable calibrations"):
        apply_fitted(np.full((1, 2), 0.5), {"method": "my_own", "prior": {"a": 0.5, "b": 0.5}}, ["a", "b"])


def test_adjustable_gamma_is_about_one_for_a_full_bias_and_about_zero_without_bias():
    texts, _ = planted(600, seed=1)
    biased = BiasedScorer([1.0, 0.0, 0.0], seed=5)
    scores = biased.scores([t["text"] for t in texts])
    result = calibrate(config(calibration_fn="adjustable_batch"), scores, scorer_context(biased, texts))
    # Slightly above 1: the mean prediction mixes the bias with the (balanced) class signal, so it
    # understates the bias a little.
    assert 0.8 <= result.details["gamma"] <= 1.8
    gamma_scores = result.details["gamma_scores"]
    assert gamma_scores["1.0"] > gamma_scores["0.0"] + 0.1
    assert result.details["labelled_examples"] == 300
    # An unbiased model on imbalanced data: the mean prediction is the true label distribution, and
    # removing it would hurt, so gamma stays near 0.
    weights = (0.7, 0.15, 0.15)
    texts, _ = planted(600, seed=1, weights=weights)
    fair = BiasedScorer([0.0, 0.0, 0.0], seed=5)
    result = calibrate(
        config(calibration_fn="adjustable_batch"),
        fair.scores([t["text"] for t in texts]),
        scorer_context(fair, texts, labelled_weights=weights),
    )
    assert result.details["gamma"] <= 0.3
    assert result.details["gamma_scores"]["0.0"] > result.details["gamma_scores"]["1.0"] + 0.1
    assert set(result.details["gamma_scores"]) == {str(g) for g in CalibrationConfig().gamma_grid}


# -- config -----------------------------------------------------------------------------------------


def test_unknown_calibration_lists_the_available_ones(sentiment_data, tiny_qwen):
    raw = classification_config(
        sentiment_data, tiny_qwen, inference={"calibration_args": {"calibration_fn": "contextal"}}
    )
    with pytest.raises(ConfigError) as error:
        checked_config(raw)
    message = str(error.value)
    assert "inference.calibration_args.calibration_fn" in message
    assert "did you mean 'contextual'" in message
    assert "adjustable_batch, batch, contextual, domain" in message
    with pytest.raises(KeyError, match="available: adjustable_batch, batch, contextual, domain"):
        CALIBRATIONS.get("platt")


def test_calibration_config_errors(sentiment_data, tiny_qwen):
    raw = classification_config(
        sentiment_data,
        tiny_qwen,
        dataset={"path": str(sentiment_data), "task_type": "generation"},
        inference={"calibration_args": {"calibration_fn": "batch", "num_estimations": 0, "gamma": 1}},
    )
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    message = str(error.value)
    assert "inference.calibration_args.num_estimations" in message
    assert "unknown key 'gamma'" in message and "gamma_grid" in message
    raw["inference"]["calibration_args"] = {"calibration_fn": "batch"}
    with pytest.raises(ConfigError, match="classification only"):
        checked_config(raw)


def test_defaults_and_labelled_calibration_needs_the_train_split(sentiment_data, tiny_qwen):
    from sft.data.prepare import needs_train_split

    plain = parse_config(classification_config(sentiment_data, tiny_qwen))
    assert plain.inference.calibration_args.calibration_fn is None
    assert plain.inference.calibration_args.content_free_inputs == ["N/A", "", "[MASK]"]
    assert not needs_train_split(plain)
    adjustable = {"calibration_args": {"calibration_fn": "adjustable_batch"}}
    assert needs_train_split(parse_config(classification_config(sentiment_data, tiny_qwen, inference=adjustable)))


# -- prompts with replaced inputs (real prompt builder and scorer) -------------------------------------


@pytest.fixture(scope="module")
def qwen(tiny_qwen):
    from sft.config import ModelConfig
    from sft.model.loading import load_model, load_tokenizer

    model_config = ModelConfig(name=str(tiny_qwen))
    return load_model(model_config), load_tokenizer(model_config)


def built_context(sentiment_data, tiny_qwen, qwen, **inference):
    from sft.data.prepare import prepare_data
    from sft.data.prompts import PromptBuilder, inference_prompts
    from sft.scoring.label_scoring import label_logprobs

    dataset = {"path": str(sentiment_data), "max_n_test": 6}  # six test prompts are enough here
    config = parse_config(classification_config(sentiment_data, tiny_qwen, dataset=dataset, inference=inference))
    data = prepare_data(config, 0)
    model, tokenizer = qwen
    builder = PromptBuilder(tokenizer, config.prompting)
    sampler = icl_sampler(data.icl_pool, "label", data.labels, 0, purpose="inference")
    prompts = inference_prompts(builder, sampler, data.test, config.inference.icl_examples, config.inference.icl_fixed)
    scored = []

    def score(batch):
        scored.append(list(batch))
        return label_logprobs(model, tokenizer, batch, data.labels, 8)

    return prompt_context(builder, sampler, data, data.test, config.inference, score, 0), prompts, data, scored


def test_content_free_prompts_keep_each_test_prompts_instruction_and_examples(sentiment_data, tiny_qwen, qwen):
    ctx, prompts, data, scored = built_context(sentiment_data, tiny_qwen, qwen, icl_examples=1)
    replaced = ctx.replaced([{"text": "N/A"}, {"text": "[MASK]"}])
    assert replaced.shape == (len(prompts), 2, 3)
    assert np.allclose(replaced.sum(axis=-1), 1.0)
    cf_prompts = scored[0]
    for index, prompt in enumerate(prompts):
        text = data.test[index]["text"]
        assert prompt.count(text) == 1  # so replacing it is unambiguous
        assert cf_prompts[2 * index] == prompt.replace(text, "N/A")
        assert cf_prompts[2 * index + 1] == prompt.replace(text, "[MASK]")


def test_a_shared_context_is_scored_once(sentiment_data, tiny_qwen, qwen):
    ctx, prompts, data, scored = built_context(sentiment_data, tiny_qwen, qwen, icl_examples=1, icl_fixed=True)
    replaced = ctx.replaced([{"text": "N/A"}, {"text": ""}])
    assert replaced.shape == (1, 2, 3)
    assert scored[0] == [prompts[0].replace(data.test[0]["text"], text) for text in ("N/A", "")]
    ctx, _, _, scored = built_context(
        sentiment_data, tiny_qwen, qwen, icl_examples=1, calibration_args={"estimate_per_prompt": False}
    )
    assert ctx.replaced([{"text": "N/A"}]).shape == (1, 1, 3)


def test_labelled_examples_come_from_the_training_split_without_themselves_in_context(sentiment_data, tiny_qwen, qwen):
    ctx, _, data, scored = built_context(
        sentiment_data, tiny_qwen, qwen, icl_examples=1, calibration_args={"labelled_examples": 12}
    )
    probabilities, targets = ctx.labelled()
    assert probabilities.shape == (12, 3) and targets.shape == (12,)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    train_texts = {example["text"]: example["label"] for example in data.train}
    for prompt, target in zip(scored[0], targets):
        shown = [text for text in train_texts if text in prompt]
        assert len(shown) >= 2  # the example itself and at least one in-context example
        # the example is the last user turn, and its label is the target
        last = max(shown, key=prompt.rfind)
        assert data.labels[target] == train_texts[last]
        assert prompt.count(last) == 1


# -- end to end ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["contextual", "batch"])
def test_calibrated_run_records_prior_and_both_probabilities(method, sentiment_data, tiny_qwen, tmp_path):
    from sft.experiment.run import run_experiment
    from sft.results.files import read_json, read_jsonl
    from sft.results.layout import Run

    raw = classification_config(sentiment_data, tiny_qwen, inference={"calibration_args": {"calibration_fn": method}})
    run = Run(method, 0, tmp_path)
    results = run_experiment(parse_config(raw), run)
    stored = read_json(run.folder / "results.json")
    details = stored["calibration"]
    assert details == results["calibration"]
    assert details["method"] == method
    prior = np.array([details["prior"][label] for label in LABELS])
    assert prior.sum() == pytest.approx(1.0)

    rows = read_jsonl(run.folder / "predictions.jsonl")
    raw_p = np.array([[row["uncalibrated_probabilities"][label] for label in LABELS] for row in rows])
    calibrated = np.array([[row["probabilities"][label] for label in LABELS] for row in rows])
    assert np.allclose(calibrated.sum(axis=1), 1.0) and np.allclose(raw_p.sum(axis=1), 1.0)
    if method == "batch":
        assert prior == pytest.approx(raw_p.mean(axis=0), abs=1e-6)
    else:
        assert details["prior_contexts"] == 1  # zero-shot: every prompt has the same context
    # Both: calibrated = normalize(p / prior), the prediction its argmax.
    expected = raw_p / prior
    assert calibrated == pytest.approx(expected / expected.sum(axis=1, keepdims=True), abs=1e-6)
    for row, probs in zip(rows, calibrated):
        assert row["prediction"] == LABELS[int(probs.argmax())]
    correct = np.mean([row["prediction"] == row["reference"] for row in rows])
    assert stored["metrics"]["accuracy"] == pytest.approx(correct)
    changed = np.mean(calibrated.argmax(axis=1) != raw_p.argmax(axis=1))
    assert details["changed_predictions"] == pytest.approx(changed)
