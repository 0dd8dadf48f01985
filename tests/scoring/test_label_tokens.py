"""sft.scoring.label_tokens: where a label's tokens start after the prompt, also when they merge with its last token."""

from __future__ import annotations

import random

import pytest
from helpers.scoring import LABELS, random_labels, random_prompts

from sft.scoring import label_tokens
from sft.scoring.label_tokens import common_prefix_length, split_all, split_continuation


@pytest.mark.parametrize("label", LABELS)
def test_split_continuation_reassembles_the_full_tokenization(tiny_loaded, chat_prompts, label):
    _, tokenizer = tiny_loaded
    for prompt in chat_prompts:
        context, continuation = split_continuation(tokenizer, prompt, label)
        assert context + continuation == tokenizer(prompt + label, add_special_tokens=False)["input_ids"]
        assert continuation, "a label must have at least one token"
        # the chat prompt ends on a token boundary, so the whole prompt is context and the label decodes back
        assert context == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(continuation) == label


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([7], [8]) == 0


def test_labels_merge_with_open_prompt_endings(peaked):
    """The exactness test below must cover labels whose first tokens merge with the prompt's last ones."""
    _, tokenizer = peaked
    prompts = ["the phone was excel", "review: the charger is ter"]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    splits = split_all(tokenizer, prompts, ["lent", "rible"])
    assert len(splits[0][0][0]) < len(prompt_ids[0]), "excel + lent"
    assert len(splits[1][1][0]) < len(prompt_ids[1]), "ter + rible"


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
