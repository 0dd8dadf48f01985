"""Models and prompts shared by the scoring tests."""

from __future__ import annotations

import pytest

from sft.synthetic import build_model, build_tokenizer


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def peaked(request):
    """A tiny model with a wide initializer: peaked logits, so a wrong position, mask or token shows up in the
    scores (a near-uniform random model would hide it)."""
    tokenizer = build_tokenizer("llama3" if request.param == "llama" else "chatml")
    model = build_model(tokenizer, request.param, seed=5, initializer_range=0.2).eval()
    return model, tokenizer


REVIEWS = [
    "awful",
    "the phone was excellent.",
    "honestly, my new battery is dreadful and the charger arrived broken after a week of ordinary use",
]


@pytest.fixture(scope="module")
def chat_prompts(tiny_loaded):
    _, tokenizer = tiny_loaded
    instruction = "Classify the sentiment of the product review as negative, neutral or positive."
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": instruction}, {"role": "user", "content": review}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for review in REVIEWS
    ]
    lengths = {len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in prompts}
    assert len(lengths) == len(prompts), "the prompts must differ in length so that padding matters"
    return prompts
