"""sft.predictors.grammar through `generate`: on random-weight models (nothing learned), constrained answers
all parse and fit their schema, match their regex or are one of their choices, while free ones do not."""

from __future__ import annotations

import re

import pytest

from sft.predictors.generation import generate
from sft.predictors.grammar import Grammar, grammar_problem
from sft.synthetic import extraction_examples
from sft.tasks.structured import infer_schema, validated

GREEDY = {"do_sample": False, "max_new_tokens": 24}  # short: most answers are cut off and completed by the grammar


@pytest.fixture(scope="module")
def cases(tiny_loaded):
    _, tokenizer = tiny_loaded
    examples = extraction_examples(60, seed=5)
    schema = infer_schema([example["target"] for example in examples], enum_limit=32)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": example["text"]}], tokenize=False, add_generation_prompt=True
        )
        for example in examples[:6]
    ]
    return schema, prompts


@pytest.mark.slow  # 24 free and constrained steps on both models: seconds on a shared machine
def test_constrained_answers_fit_the_schema_where_free_ones_do_not(tiny_loaded, cases):
    model, tokenizer = tiny_loaded
    schema, prompts = cases
    free = generate(model, tokenizer, prompts, batch_size=3, generation_args=GREEDY)
    assert not all(validated(text, schema) for text in free)
    constrained = generate(model, tokenizer, prompts, 3, GREEDY, Grammar.json_schema(schema))
    assert all(validated(text, schema) is not None for text in constrained), constrained
    assert all(text.startswith('{"aspects":') for text in constrained)  # keys in the training targets' order


def test_regex_and_choice_constraints(tiny_loaded, cases):
    model, tokenizer = tiny_loaded
    _, prompts = cases
    pattern = "[0-9]{2}-[a-z]+"
    texts = generate(model, tokenizer, prompts[:3], 3, GREEDY, Grammar.regex(pattern))
    assert all(re.fullmatch(pattern, text) for text in texts), texts
    choices = ["negative", "neutral", "positive"]
    assert set(generate(model, tokenizer, prompts[:3], 3, GREEDY, Grammar.choice(choices))) <= set(choices)


def test_a_grammar_the_engine_cannot_compile_is_named():
    assert grammar_problem(Grammar.regex("[a-z]+")) is None
    assert "look-around" in (grammar_problem(Grammar.regex("(?<=a)b")) or "")
