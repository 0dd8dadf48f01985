"""Labels and prompts for the scoring tests: fixed labels, and random labels and prompts that share prefixes."""

from __future__ import annotations

import random

from sft.synthetic import INSTRUCTION_WORDS, NOUNS, SENTIMENT_WORDS

WORDS = [*NOUNS, *(word for group in SENTIMENT_WORDS.values() for word in group)]
# Prompts that end inside a word, so that labels such as "lent" or "rible" merge with their last tokens.
OPEN_ENDINGS = ["the phone was excel", "review: the charger is ter", "answer: neg", "the cable is"]


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


# Single-token and multi-token labels, with shared text prefixes ("neg"/"negative", "positive"/"positively great").
LABELS = ["positive", "positively great", "neutral", "negative", "neg"]
