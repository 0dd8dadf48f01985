"""The one-pass scorer (sft.scoring.trie behind sft.scoring.label_scoring.label_logprobs) must equal brute force
exactly:
random label sets (shared prefixes, single- and multi-token, labels merging with the prompt's end), padding,
batch sizes 1..N, small trie chunks, shared prefix on and off; on Llama and Qwen2, LoRA and 8-bit models."""

from __future__ import annotations

import logging
import random

import pytest
import torch
from helpers import icl_sampler

from sft.config import InferenceConfig
from sft.scoring import label_scoring as scoring
from sft.scoring import label_tokens
from sft.scoring import trie as trie_scoring
from sft.scoring.label_scoring import (
    brute_force_logprobs,
    classification_scores,
    label_logprobs,
    normalize,
    score_labels,
    split_all,
)
from sft.synthetic import INSTRUCTION_WORDS, NOUNS, SENTIMENT_WORDS, build_model, build_tokenizer

TOLERANCE = 1e-4
WORDS = [*NOUNS, *(word for group in SENTIMENT_WORDS.values() for word in group)]
# Prompts that end inside a word, so that labels such as "lent" or "rible" merge with their last tokens.
OPEN_ENDINGS = ["the phone was excel", "review: the charger is ter", "answer: neg", "the cable is"]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def peaked(request):
    """A tiny model with a wide initializer: peaked logits, so a wrong position, mask or token shows up in the
    scores (a near-uniform random model would hide it)."""
    tokenizer = build_tokenizer("llama3" if request.param == "llama" else "chatml")
    model = build_model(tokenizer, request.param, seed=5, initializer_range=0.2).eval()
    return model, tokenizer


def random_labels(rng: random.Random) -> list[str]:
    """Labels sharing prefixes ("neg", "negative", "negative cable"), single and multi-token, some without a
    leading space (they merge with a prompt ending inside a word)."""
    labels: set[str] = set()
    while len(labels) < rng.randint(1, 10):
        word = rng.choice(WORDS)
        kind = rng.random()
        if kind < 0.25:
            labels.add(word[: rng.randint(1, len(word))])
        elif kind < 0.5:
            labels.add(f"{word} {rng.choice(WORDS)}")
        elif kind < 0.65:
            labels.add(" " + word)
        elif kind < 0.8:
            labels.add(rng.choice(["lent", "rible", "ative", "lent phone", "rible battery"]))
        else:
            labels.add(word)
    return sorted(labels)


def random_prompts(rng: random.Random, tokenizer, count: int) -> list[str]:
    """Chat prompts sharing an instruction and fixed in-context examples, mixed with plain open-ended ones."""
    prompts = []
    for _ in range(count):
        review = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.7:
            messages = [
                {"role": "system", "content": INSTRUCTION_WORDS},
                {"role": "user", "content": "the phone was excellent"},
                {"role": "assistant", "content": "positive"},
                {"role": "user", "content": review},
            ]
            prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        else:
            prompts.append(f"{review}. {rng.choice(OPEN_ENDINGS)}")
    return prompts


def test_the_models_are_peaked_enough_to_catch_mistakes(peaked):
    model, tokenizer = peaked
    prompts = random_prompts(random.Random(0), tokenizer, 3)
    scores = brute_force_logprobs(model, tokenizer, prompts, ["positive", "neg", "cable"])
    assert scores.std() > 0.5, "near-uniform logits would let a wrong computation pass"


def test_labels_merge_with_open_prompt_endings(peaked):
    """The exactness test below must cover labels whose first tokens merge with the prompt's last ones."""
    _, tokenizer = peaked
    prompts = ["the phone was excel", "review: the charger is ter"]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    splits = split_all(tokenizer, prompts, ["lent", "rible"])
    assert len(splits[0][0][0]) < len(prompt_ids[0]), "excel + lent"
    assert len(splits[1][1][0]) < len(prompt_ids[1]), "ter + rible"


@pytest.mark.parametrize("seed", range(4))
def test_random_label_sets_equal_brute_force(peaked, seed):
    model, tokenizer = peaked
    rng = random.Random(seed)
    prompts = random_prompts(rng, tokenizer, rng.randint(1, 7))
    labels = random_labels(rng)
    expected = brute_force_logprobs(model, tokenizer, prompts, labels, batch_size=16).double()
    worst = 0.0
    for batch_size in sorted({rng.randint(1, 3), len(prompts)}):
        for shared_prefix in (True, False):
            chunk = rng.choice([None, 2, 5])
            scores = label_logprobs(
                model, tokenizer, prompts, labels, batch_size, shared_prefix=shared_prefix, trie_chunk=chunk
            )
            assert scores.shape == (len(prompts), len(labels)) and scores.dtype == torch.float32
            difference = (scores.double() - expected).abs().max().item()
            worst = max(worst, difference)
            assert difference <= TOLERANCE, f"batch {batch_size}, shared prefix {shared_prefix}, chunk {chunk}"
    print(f"seed {seed}: {len(prompts)} prompts x {len(labels)} labels, max |difference| {worst:.2e}")


def test_shared_prefix_and_chunked_trie_are_exercised(peaked, monkeypatch):
    """Chat prompts share the instruction and example: the prefix path runs; multi-token labels need trie
    chunks; the result still equals brute force."""
    model, tokenizer = peaked
    prompts = [p for p in random_prompts(random.Random(3), tokenizer, 12) if "<|" in p][:4]
    labels = ["negative cable", "negative", "neg", "positive phone", "positive"]
    seen = {}
    original = trie_scoring.TrieScorer._score_trie

    def spy(self, trie, *args):
        seen.update(prefix=len(self.prefix), nodes=len(trie.nodes))
        return original(self, trie, *args)

    monkeypatch.setattr(trie_scoring.TrieScorer, "_score_trie", spy)
    scores = label_logprobs(model, tokenizer, prompts, labels, batch_size=3, trie_chunk=1)
    assert seen["prefix"] >= trie_scoring.MIN_SHARED_PREFIX and seen["nodes"] >= 2
    expected = brute_force_logprobs(model, tokenizer, prompts, labels)
    assert (scores - expected).abs().max().item() <= TOLERANCE


def test_no_prompts_or_no_labels_give_empty_scores(peaked):
    model, tokenizer = peaked
    assert label_logprobs(model, tokenizer, [], ["neg"]).shape == (0, 1)
    assert label_logprobs(model, tokenizer, ["the cable is"], []).shape == (1, 0)


def test_eager_attention_equals_brute_force(peaked):
    model, tokenizer = peaked
    prompts = random_prompts(random.Random(7), tokenizer, 4)
    labels = ["lent", "negative cable", "neg", " phone"]
    expected = brute_force_logprobs(model, tokenizer, prompts, labels)
    implementation = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        scores = label_logprobs(model, tokenizer, prompts, labels, batch_size=3, trie_chunk=2)
    finally:
        model.config._attn_implementation = implementation
    assert (scores - expected).abs().max().item() <= TOLERANCE


def test_attention_without_4d_masks_falls_back_to_brute_force(peaked, monkeypatch, caplog):
    model, tokenizer = peaked
    prompts, labels = ["the phone was excel", "the cable is"], ["lent", "negative cable"]
    expected = brute_force_logprobs(model, tokenizer, prompts, labels)
    calls = []

    def brute_force_in_sdpa(*args, **kwargs):  # flash attention does not run on CPU: run the real fallback in sdpa
        calls.append(model.config._attn_implementation)
        model.config._attn_implementation = "sdpa"
        return brute_force_logprobs(*args, **kwargs)

    monkeypatch.setattr(scoring, "brute_force_logprobs", brute_force_in_sdpa)
    model.config._attn_implementation = "flash_attention_2"
    try:
        with caplog.at_level(logging.WARNING, logger="sft.scoring.label_scoring"):
            scores = label_logprobs(model, tokenizer, prompts, labels)
    finally:
        model.config._attn_implementation = "sdpa"
    assert calls == ["flash_attention_2"]
    assert "flash_attention_2" in caplog.text and "brute force" in caplog.text
    assert torch.allclose(scores, expected, atol=TOLERANCE, rtol=0)


def test_lora_model_equals_brute_force(peaked):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = peaked
    base = build_model(tokenizer, model.config.model_type, seed=5, initializer_range=0.2).eval()
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    lora = get_peft_model(base, config).eval()
    prompts = random_prompts(random.Random(11), tokenizer, 4)
    labels = ["negative cable", "neg", "positive", "rible"]
    expected = brute_force_logprobs(lora, tokenizer, prompts, labels)
    assert (expected - brute_force_logprobs(model, tokenizer, prompts, labels)).abs().max() > 1e-3, "LoRA is active"
    scores = label_logprobs(lora, tokenizer, prompts, labels, batch_size=3, trie_chunk=2)
    assert (scores - expected).abs().max().item() <= TOLERANCE


def test_8bit_quantized_model_equals_brute_force(tiny_llama):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    quantization = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, quantization_config=quantization, device_map="cpu")
    assert getattr(model, "is_loaded_in_8bit", False)
    prompts = random_prompts(random.Random(13), tokenizer, 3)
    labels = ["negative cable", "neg", "positive"]
    expected = brute_force_logprobs(model, tokenizer, prompts, labels)
    scores = label_logprobs(model, tokenizer, prompts, labels, batch_size=2, trie_chunk=1)
    assert (scores - expected).abs().max().item() <= TOLERANCE


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


def test_split_all_after_special_tokens_equals_tokenizing_every_pair(peaked):
    """Chat prompts are split at their last special token and each tail + label tokenized once; the result
    must equal tokenizing every prompt + label, including labels that start with a special token or a newline.
    Prompts without a special token take the full path."""
    _, tokenizer = peaked
    rng = random.Random(23)
    chat = [p for p in random_prompts(rng, tokenizer, 12) if "<|" in p]
    labels = [*random_labels(rng), "\n", " x", tokenizer.eos_token, "lent"]

    def every_pair(prompts):
        prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        full = [tokenizer(p + label, add_special_tokens=False)["input_ids"] for p in prompts for label in labels]
        return [
            [label_tokens._split(prompt_ids[p], full[p * len(labels) + l], label) for l, label in enumerate(labels)]
            for p in range(len(prompts))
        ]

    assert label_tokens._split_after_special_tokens(tokenizer, chat, labels) is not None
    assert split_all(tokenizer, chat, labels) == every_pair(chat)
    mixed = [*chat[:2], "the phone was excel"]
    assert label_tokens._split_after_special_tokens(tokenizer, mixed, labels) is None
    assert split_all(tokenizer, mixed, labels) == every_pair(mixed)
