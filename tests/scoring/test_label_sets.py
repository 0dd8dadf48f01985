"""sft.scoring.label_sets: the probability that a label is in the generated set, by the chain rule."""

from __future__ import annotations

import math

import numpy as np

from sft.scoring.label_scoring import label_logprobs
from sft.scoring.label_sets import label_set_probabilities


def test_label_set_probabilities_follow_the_chain_rule(tiny_loaded):
    model, tokenizer = tiny_loaded
    labels = ["negative", "neutral", "positive"]
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        for text in ("the phone was awful.", "my new camera is lovely and the cable was plain")
    ]
    probabilities = label_set_probabilities(model, tokenizer, prompts, labels, ", ")
    first = label_logprobs(model, tokenizer, prompts, labels).double().exp().numpy()
    assert probabilities.shape == (2, 3)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    # the first label can only start the answer
    np.testing.assert_allclose(probabilities[:, 0], first[:, 0], rtol=1e-6)
    # "positive" after "negative, " or "neutral, ": brute force over the two-label answers
    for p, prompt in enumerate(prompts):
        expected = first[p, 2]
        for m in (0, 1):
            pair = label_logprobs(model, tokenizer, [prompt], [f"{labels[m]}, positive"]).double().exp().item()
            expected += pair
        assert math.isclose(probabilities[p, 2], expected, rel_tol=1e-4), (probabilities[p, 2], expected)
    # each label is at least as likely as its starting the answer, and the scores are not a distribution
    assert np.all(probabilities >= first - 1e-9)
