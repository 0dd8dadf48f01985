"""The one-pass scorer stays exact under every adapter method: PEFT's layers (LoRA, DoRA, LoHa, LoKr,
VeRA, (IA)³, AdaLoRA, OFT, BOFT) change only the weights it runs, and prompt and prefix tuning put
virtual tokens before every sequence, which the scorer keeps as a KV cache. Each is compared with brute
force (PEFT's own forward, one sequence per prompt and label) on a tiny model whose adapter weights are
perturbed, so an adapter that did nothing would not hide a mistake."""

from __future__ import annotations

import random

import pytest
import torch
from helpers.scoring import random_labels, random_prompts
from peft import get_peft_model

from sft.config import LoraSection
from sft.config.adapters import ADAPTERS
from sft.model.adapters import peft_config
from sft.scoring.label_scoring import brute_force_logprobs, label_logprobs
from sft.synthetic import build_model, build_tokenizer

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("chatml")


@pytest.mark.slow
@pytest.mark.parametrize("method", list(ADAPTERS))
def test_every_method_scores_labels_as_brute_force(tokenizer, method):
    model = build_model(tokenizer, "llama", seed=5, hidden_size=32, layers=1, initializer_range=0.2)
    peft_model = get_peft_model(model, peft_config(LoraSection(method=method), total_steps=10))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move every adapter weight off its (often identity) initialization
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
    peft_model.eval()
    rng = random.Random(1)
    prompts = random_prompts(rng, tokenizer, 4)
    labels = [*random_labels(rng), "negative cable", "neg"]
    expected = brute_force_logprobs(peft_model, tokenizer, prompts, labels, batch_size=16).double()
    for shared_prefix in (True, False):
        scores = label_logprobs(peft_model, tokenizer, prompts, labels, 2, shared_prefix=shared_prefix, trie_chunk=3)
        difference = (scores.double() - expected).abs().max().item()
        assert difference <= TOLERANCE, f"{method}, shared prefix {shared_prefix}: {difference:.2e}"
