"""sft.scoring.label_scoring: label log-likelihoods must equal a brute-force, one-sequence-at-a-time computation;
the normalizations (sum, mean, per_char, pmi) and the content-free prompt."""

from __future__ import annotations

import random

import pytest
import torch
from helpers import icl_sampler
from helpers.scoring import LABELS, random_prompts

from sft.config import InferenceConfig
from sft.scoring.label_scoring import (
    brute_force_logprobs,
    classification_scores,
    label_logprobs,
    normalize,
    score_labels,
    split_all,
)
from sft.scoring.label_tokens import common_prefix_length, split_continuation

TOLERANCE = 1e-4


def brute_force(model, tokenizer, prompt: str, label: str) -> float:
    """One full forward pass over prompt + label, unpadded, in float64 afterwards."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + label, add_special_tokens=False)["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full_ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(sum(logprobs[t - 1, full_ids[t]] for t in range(start, len(full_ids))))


def brute_force_matrix(model, tokenizer, prompts, labels) -> torch.Tensor:
    return torch.tensor(
        [[brute_force(model, tokenizer, prompt, label) for label in labels] for prompt in prompts], dtype=torch.float64
    )


@pytest.fixture(scope="module")
def expected(tiny_loaded, chat_prompts):
    model, tokenizer = tiny_loaded
    return brute_force_matrix(model, tokenizer, chat_prompts, LABELS)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_label_logprobs_equal_brute_force(tiny_loaded, chat_prompts, expected, batch_size):
    model, tokenizer = tiny_loaded
    scores = label_logprobs(model, tokenizer, chat_prompts, LABELS, batch_size=batch_size)
    assert scores.shape == (len(chat_prompts), len(LABELS))
    assert scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    assert (scores < 0).all()
    difference = (scores.double() - expected).abs().max().item()
    assert difference <= TOLERANCE, f"batch_size={batch_size}: max |difference| {difference}"


def test_scores_identical_across_batch_sizes(tiny_loaded, chat_prompts):
    model, tokenizer = tiny_loaded
    pairs = len(chat_prompts) * len(LABELS)
    results = [label_logprobs(model, tokenizer, chat_prompts, LABELS, batch_size=size) for size in (1, 3, pairs + 5)]
    for other in results[1:]:
        assert torch.allclose(results[0], other, atol=TOLERANCE, rtol=0)


def test_scores_do_not_depend_on_the_other_prompts_and_labels(tiny_loaded, chat_prompts):
    """Each cell is a property of its own (prompt, label) pair: order and company must not matter."""
    model, tokenizer = tiny_loaded
    full = label_logprobs(model, tokenizer, chat_prompts, LABELS, batch_size=4)
    reversed_prompts = chat_prompts[::-1]
    reversed_labels = LABELS[::-1]
    shuffled = label_logprobs(model, tokenizer, reversed_prompts, reversed_labels, batch_size=4)
    assert torch.allclose(full, shuffled.flip(0).flip(1), atol=TOLERANCE, rtol=0)
    single = label_logprobs(model, tokenizer, chat_prompts[1:2], ["neg"], batch_size=4)
    assert single.shape == (1, 1)
    assert abs(single.item() - full[1, LABELS.index("neg")].item()) <= TOLERANCE


def test_multi_token_labels_score_lower_than_their_first_token(tiny_loaded, chat_prompts):
    """A multi-token label's log-probability sums several negative terms, so it cannot exceed the log-probability
    of its first token alone (a label scored only on its first token would break this)."""
    model, tokenizer = tiny_loaded
    prompt = chat_prompts[0]
    _, continuation = split_continuation(tokenizer, prompt, "positively great")
    assert len(continuation) > 1
    first_token = tokenizer.decode(continuation[:1])
    scores = label_logprobs(model, tokenizer, [prompt], ["positively great", first_token])
    assert scores[0, 0] < scores[0, 1]
    assert brute_force(model, tokenizer, prompt, first_token) == pytest.approx(scores[0, 1].item(), abs=TOLERANCE)


def test_softmax_over_labels_sums_to_one(tiny_loaded, chat_prompts):
    model, tokenizer = tiny_loaded
    scores = label_logprobs(model, tokenizer, chat_prompts, LABELS)
    probabilities = torch.softmax(scores.double(), dim=-1)
    assert torch.allclose(probabilities.sum(dim=-1), torch.ones(len(chat_prompts), dtype=torch.float64))
    assert ((probabilities > 0) & (probabilities < 1)).all()


def test_label_merging_with_the_last_prompt_token(tiny_loaded):
    """'excel' + 'lent' tokenizes as one ' excellent' token: the label starts where the tokenizations diverge."""
    model, tokenizer = tiny_loaded
    prompt, label = "the phone was excel", "lent"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + label, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] != prompt_ids, "the test needs a label that merges across the boundary"

    context, continuation = split_continuation(tokenizer, prompt, label)
    assert context + continuation == full_ids
    assert len(context) == common_prefix_length(prompt_ids, full_ids) < len(prompt_ids)
    assert tokenizer.decode(context) + tokenizer.decode(continuation) == prompt + label
    assert tokenizer.decode(continuation).endswith(label)

    scores = label_logprobs(model, tokenizer, [prompt, "the phone was"], [label, " excellent"], batch_size=2)
    assert scores[0, 0].item() == pytest.approx(brute_force(model, tokenizer, prompt, label), abs=TOLERANCE)
    # the merged label is scored as the token the model actually sees: ' excellent' after 'the phone was'
    assert scores[0, 0].item() == pytest.approx(scores[1, 1].item(), abs=TOLERANCE)


def test_label_adding_no_tokens_raises(tiny_loaded, chat_prompts):
    model, tokenizer = tiny_loaded
    with pytest.raises(ValueError, match="adds no tokens"):
        split_continuation(tokenizer, chat_prompts[0], "")
    with pytest.raises(ValueError, match="adds no tokens"):
        label_logprobs(model, tokenizer, chat_prompts, ["positive", ""])


def test_empty_prompt_raises(tiny_loaded):
    model, tokenizer = tiny_loaded
    with pytest.raises(ValueError, match="context token"):
        label_logprobs(model, tokenizer, [""], ["positive", "negative"])


def test_normalizations(peaked):
    model, tokenizer = peaked
    prompts = random_prompts(random.Random(17), tokenizer, 3)
    labels = ["neg", "negative cable", "positive"]
    scores = score_labels(model, tokenizer, prompts, labels)
    lengths = [[len(label) for _, label in row] for row in split_all(tokenizer, prompts, labels)]
    assert scores.counts.tolist() == lengths
    assert torch.equal(normalize(scores, labels, "sum"), scores.sums)
    assert torch.allclose(normalize(scores, labels, "mean"), scores.sums / torch.tensor(lengths))
    per_char = normalize(scores, labels, "per_char")
    assert torch.allclose(per_char[:, 1], scores.sums[:, 1] / len("negative cable"))
    content_free = torch.tensor([-1.0, -2.0, -3.0])
    assert torch.allclose(normalize(scores, labels, "pmi", content_free), scores.sums - content_free)
    with pytest.raises(ValueError, match="content-free"):
        normalize(scores, labels, "pmi")


def test_classification_scores_follow_the_configured_normalization(peaked):
    model, tokenizer = peaked
    prompts = random_prompts(random.Random(19), tokenizer, 3)
    labels = ["neg", "negative cable", "positive"]
    sums = label_logprobs(model, tokenizer, prompts, labels)
    assert torch.equal(classification_scores(model, tokenizer, prompts, labels, InferenceConfig()), sums)
    neutral = "the review: N/A"
    pmi = classification_scores(model, tokenizer, prompts, labels, InferenceConfig(normalization="pmi"), neutral)
    prior = brute_force_logprobs(model, tokenizer, [neutral], labels)
    assert torch.allclose(pmi, sums - prior, atol=TOLERANCE)
    # the normalization changes which label wins somewhere, else it would be pointless to offer
    mean = classification_scores(model, tokenizer, prompts, labels, InferenceConfig(normalization="mean"))
    assert not torch.equal(mean.argmax(-1), sums.argmax(-1)) or not torch.equal(pmi.argmax(-1), sums.argmax(-1))
    with pytest.raises(ValueError, match="content-free"):
        classification_scores(model, tokenizer, prompts, labels, InferenceConfig(normalization="pmi"))


def test_content_free_prompt_is_the_template_around_n_a(peaked):
    from sft.config import PromptingConfig
    from sft.data.prompts import PromptBuilder
    from sft.scoring.label_scoring import content_free_prompt

    _, tokenizer = peaked
    prompting = PromptingConfig(instruction="Classify.", input_columns=["text"], output_column="label")
    builder = PromptBuilder(tokenizer, prompting)
    sampler = icl_sampler(None, "label", ["neg", "pos"], seed=0, purpose="inference")
    assert content_free_prompt(builder, sampler, ["text"], InferenceConfig()) is None
    prompt = content_free_prompt(builder, sampler, ["text"], InferenceConfig(normalization="pmi"))
    assert prompt == builder.prompt({"text": "N/A"}, [])
    assert "N/A" in prompt and "Classify." in prompt
