"""The one-pass scorer (sft.scoring.trie behind sft.scoring.label_scoring.label_logprobs) must equal brute force
exactly:
random label sets (shared prefixes, single- and multi-token, labels merging with the prompt's end), padding,
batch sizes 1..N, small trie chunks, shared prefix on and off; on Llama and Qwen2, LoRA and 8-bit models."""

from __future__ import annotations

import logging
import random

import pytest
import torch
from helpers.scoring import random_labels, random_prompts

from sft.scoring import label_scoring as scoring
from sft.scoring import trie as trie_scoring
from sft.scoring.label_scoring import brute_force_logprobs, label_logprobs
from sft.synthetic import build_model

TOLERANCE = 1e-4


def test_the_models_are_peaked_enough_to_catch_mistakes(peaked):
    model, tokenizer = peaked
    prompts = random_prompts(random.Random(0), tokenizer, 3)
    scores = brute_force_logprobs(model, tokenizer, prompts, ["positive", "neg", "cable"])
    assert scores.std() > 0.5, "near-uniform logits would let a wrong computation pass"


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
