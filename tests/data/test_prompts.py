"""sft.data.prompts: chat prompts from examples with the tiny tokenizers' real chat templates."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from helpers import classification_config, icl_sampler
from transformers import AutoTokenizer

from sft.config import PromptingConfig, parse_config
from sft.data.prepare import prepare_data
from sft.data.prompts import ICLSampler, PromptBuilder, inference_prompts, supports_system_role, training_examples
from sft.synthetic import sentiment_examples

LABELS = ["negative", "neutral", "positive"]
INSTRUCTION = "Classify the sentiment of the product review as negative, neutral or positive."
GENERATION_PROMPTS = {
    "qwen": "<|im_start|>assistant\n",
    "llama": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "no_system": "<|im_start|>assistant\n",
}
# Where the final user turn starts in a rendered prompt.
USER_HEADERS = {
    "qwen": "<|im_start|>user\n",
    "llama": "<|start_header_id|>user<|end_header_id|>\n\n",
    "no_system": "<|im_start|>user\n",
}
LONG_TEXT = (
    "the phone arrived today and it looks wonderful, the battery is excellent and the screen is lovely; "
    "honestly, my new laptop is brilliant overall and the keyboard still feels superb after a week of use"
)


@pytest.fixture(scope="module")
def tokenizers(tiny_qwen, tiny_llama, tiny_no_system) -> dict[str, Any]:
    return {
        "qwen": AutoTokenizer.from_pretrained(tiny_qwen),
        "llama": AutoTokenizer.from_pretrained(tiny_llama),
        "no_system": AutoTokenizer.from_pretrained(tiny_no_system),
    }


def pool_rows(count: int, seed: int = 1, start: int = 0) -> list[dict[str, Any]]:
    """Sentiment examples with a unique id and a unique text."""
    return [
        {"id": start + i, "text": f"{example['text']} (review {start + i})", "label": example["label"]}
        for i, example in enumerate(sentiment_examples(count, seed))
    ]


def classification_prompting(**overrides: Any) -> PromptingConfig:
    return PromptingConfig(
        **{"instruction": INSTRUCTION, "input_columns": ["text"], "output_column": "label", **overrides}
    )


def final_user_start(prompt: str, name: str) -> int:
    return prompt.rindex(USER_HEADERS[name])


def context_of(prompt: str, name: str) -> str:
    """Everything before the final user turn: instruction and in-context examples."""
    return prompt[: final_user_start(prompt, name)]


def roles(messages: list[dict[str, str]]) -> list[str]:
    return [message["role"] for message in messages]


# -- system role, turns, generation prompt -----------------------------------------------------------


def test_supports_system_role(tokenizers):
    assert supports_system_role(tokenizers["qwen"])
    assert supports_system_role(tokenizers["llama"])
    assert not supports_system_role(tokenizers["no_system"])


@pytest.mark.parametrize("name", ["qwen", "llama"])
def test_instruction_is_the_system_turn(tokenizers, name):
    builder = PromptBuilder(tokenizers[name], classification_prompting())
    example = {"text": "the phone was awful", "label": "negative"}
    assert builder.messages(example, []) == [
        {"role": "system", "content": INSTRUCTION},
        {"role": "user", "content": "the phone was awful"},
    ]
    prompt = builder.prompt(example, [])
    assert prompt.count(INSTRUCTION) == 1
    assert prompt.index("system") < prompt.index(INSTRUCTION) < prompt.index("the phone was awful")


def test_instruction_goes_into_the_first_user_turn_without_system_role(tokenizers):
    builder = PromptBuilder(tokenizers["no_system"], classification_prompting())
    assert not builder.system_supported
    example = {"text": "the phone was awful", "label": "negative"}
    assert builder.messages(example, []) == [{"role": "user", "content": f"{INSTRUCTION}\n\nthe phone was awful"}]

    shown = pool_rows(2)
    messages = builder.messages(example, shown)
    assert roles(messages) == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == f"{INSTRUCTION}\n\n{shown[0]['text']}"
    assert messages[2]["content"] == shown[1]["text"]
    assert messages[-1]["content"] == "the phone was awful"
    prompt = builder.prompt(example, shown)  # the template raises on a system turn; this must not
    assert "system" not in prompt
    assert prompt.count(INSTRUCTION) == 1
    assert prompt.index(INSTRUCTION) < prompt.index(shown[0]["text"])


def test_no_instruction_no_system_turn(tokenizers):
    builder = PromptBuilder(tokenizers["qwen"], classification_prompting(instruction=""))
    assert builder.messages({"text": "plain", "label": "neutral"}, []) == [{"role": "user", "content": "plain"}]


@pytest.mark.parametrize("name", ["qwen", "llama", "no_system"])
def test_prompt_ends_with_the_generation_prompt(tokenizers, name):
    builder = PromptBuilder(tokenizers[name], classification_prompting())
    for icl in ([], pool_rows(3)):
        prompt = builder.prompt({"text": "the cable is standard", "label": "neutral"}, icl)
        assert prompt.endswith(GENERATION_PROMPTS[name])
        assert (
            prompt[: -len(GENERATION_PROMPTS[name])]
            .rstrip()
            .endswith("the cable is standard" + ("<|eot_id|>" if name == "llama" else "<|im_end|>"))
        )


@pytest.mark.parametrize("name", ["qwen", "llama", "no_system"])
def test_in_context_examples_are_user_assistant_turns_before_the_final_user_turn(tokenizers, name):
    builder = PromptBuilder(tokenizers[name], classification_prompting())
    example = {"text": "the charger is faulty", "label": "negative"}
    shown = pool_rows(3)
    messages = builder.messages(example, shown)
    turns = messages[1:] if builder.system_supported else messages
    assert roles(turns) == ["user", "assistant"] * 3 + ["user"]
    for index, icl in enumerate(shown):
        assert turns[2 * index]["content"].endswith(icl["text"])
        assert turns[2 * index + 1]["content"] == icl["label"]
    assert turns[-1]["content"] == example["text"]

    prompt = builder.prompt(example, shown)
    final = final_user_start(prompt, name)
    positions = [prompt.index(icl["text"]) for icl in shown]
    assert positions == sorted(positions)
    assert positions[-1] < final < prompt.index(example["text"])
    assert prompt.count(GENERATION_PROMPTS[name]) == 4  # three answered turns and the open one


# -- ICLSampler ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Dataset:
    return Dataset.from_list(pool_rows(30))  # ten per label


def test_sampler_takes_k_per_label_for_classification(pool):
    sampler = icl_sampler(pool, "label", LABELS, seed=0, purpose="inference")
    for k in (1, 2, 4):
        for key in range(5):
            chosen = sampler.sample(k, key=key)
            assert Counter(example["label"] for example in chosen) == dict.fromkeys(LABELS, k)
            assert len({example["id"] for example in chosen}) == len(chosen)
    assert sampler.sample(0, key=1) == []


def test_sampler_takes_k_in_all_for_generation(pool):
    sampler = icl_sampler(pool, "label", None, seed=0, purpose="inference")
    for k in (1, 3, 5):
        chosen = sampler.sample(k, key=2)
        assert len(chosen) == k
        assert len({example["id"] for example in chosen}) == k


@pytest.mark.parametrize("labels", [LABELS, None])
def test_sampler_never_returns_the_excluded_example(labels):
    # Two examples per label and k=2: without the exclusion the excluded example would always be drawn.
    small = Dataset.from_list(pool_rows(6))
    sampler = icl_sampler(small, "label", labels, seed=3, purpose="train")
    k = 2 if labels else 5
    for key in range(60):
        exclude = key % len(small)
        chosen = sampler.sample(k, key=key, exclude=exclude)
        ids = [example["id"] for example in chosen]
        assert exclude not in ids
        assert len(ids) == len(set(ids)) == 5  # everything else was taken

    big = icl_sampler(Dataset.from_list(pool_rows(30)), "label", labels, seed=3, purpose="train")
    for key in range(200):
        exclude = (7 * key) % 30
        assert exclude not in [example["id"] for example in big.sample(3, key=key, exclude=exclude)]


def test_sampler_is_reproducible_per_seed_and_key(pool):
    first = icl_sampler(pool, "label", LABELS, seed=11, purpose="inference")
    second = icl_sampler(pool, "label", LABELS, seed=11, purpose="inference")
    other = icl_sampler(pool, "label", LABELS, seed=12, purpose="inference")

    def ids(sampler: ICLSampler, key: int) -> list[int]:
        return [example["id"] for example in sampler.sample(2, key=key)]

    forward = [ids(first, key) for key in range(10)]
    backward = [ids(second, key) for key in reversed(range(10))][::-1]  # order of calls does not matter
    assert forward == backward
    assert forward != [ids(other, key) for key in range(10)]
    assert len({tuple(draw) for draw in forward}) > 1  # different keys, different draws


def test_in_context_examples_come_only_from_the_pool(tmp_path):
    data_folder = tmp_path / "data"
    data_folder.mkdir()
    splits = {"train": pool_rows(60, seed=1), "test": pool_rows(12, seed=2, start=1000)}
    for name, examples in splits.items():
        (data_folder / f"{name}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    test_ids = {example["id"] for example in splits["test"]}

    few_shot = prepare_data(parse_config(classification_config(data_folder, Path("m"), dataset={"shots": 2})), 0)
    shot_ids = set(few_shot.shots["id"])
    sampler = icl_sampler(few_shot.icl_pool, "label", few_shot.labels, seed=0, purpose="inference")
    drawn = {example["id"] for key in range(50) for example in sampler.sample(1, key=key)}
    assert drawn <= shot_ids
    assert not drawn & test_ids

    zero_shot = prepare_data(
        parse_config(classification_config(data_folder, Path("m"), inference={"icl_examples": 1})), 0
    )
    sampler = icl_sampler(zero_shot.icl_pool, "label", zero_shot.labels, seed=0, purpose="inference")
    drawn = {example["id"] for key in range(50) for example in sampler.sample(1, key=key)}
    assert drawn <= set(range(60))
    assert len(drawn) > 3 * 2  # the whole training split is used, not only a few examples


# -- training and inference prompts --------------------------------------------------------------------


def test_training_examples_never_show_an_example_in_its_own_context(tokenizers):
    # Three shots per label and three in-context examples per label: every example of a label would be
    # shown, so the example's own text can only be missing from its context if it is excluded.
    shots = Dataset.from_list(pool_rows(9))
    builder = PromptBuilder(tokenizers["qwen"], classification_prompting())
    sampler = icl_sampler(shots, "label", LABELS, seed=5, purpose="train")
    pairs = training_examples(builder, sampler, shots, icl_examples=3)
    assert len(pairs) == len(shots)
    for example, pair in zip(shots, pairs):
        prompt = pair["prompt"]
        assert prompt[0] == {"role": "system", "content": INSTRUCTION}
        assert prompt[-1] == {"role": "user", "content": example["text"]}
        context = [message["content"] for message in prompt[1:-1] if message["role"] == "user"]
        assert example["text"] not in context
        assert len(context) == 8  # all the other shots: three of each other label, two of its own
        assert pair["completion"] == [{"role": "assistant", "content": example["label"]}]


def test_fixed_inference_context_is_the_same_for_every_prompt(tokenizers, pool):
    test = Dataset.from_list(pool_rows(8, seed=9, start=500))
    builder = PromptBuilder(tokenizers["qwen"], classification_prompting())
    sampler = icl_sampler(pool, "label", LABELS, seed=0, purpose="inference")

    fixed = inference_prompts(builder, sampler, test, icl_examples=1, fixed=True)
    assert len(fixed) == len(test)
    assert len({context_of(prompt, "qwen") for prompt in fixed}) == 1
    for prompt, example in zip(fixed, test):
        assert prompt.endswith(f"{example['text']}<|im_end|>\n{GENERATION_PROMPTS['qwen']}")

    varied = inference_prompts(builder, sampler, test, icl_examples=1, fixed=False)
    assert len({context_of(prompt, "qwen") for prompt in varied}) > 1
    for prompt in fixed + varied:
        assert not any(example["text"] in context_of(prompt, "qwen") for example in test)


# -- truncation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qwen", "llama"])
def test_max_input_length_truncates_each_input_column(tokenizers, name):
    tokenizer = tokenizers[name]
    prompting = PromptingConfig(
        input_columns=["premise", "hypothesis"],
        output_column="label",
        input_template="Premise: {premise}\nHypothesis: {hypothesis}",
        max_input_length=5,
    )
    builder = PromptBuilder(tokenizer, prompting)
    hypothesis = "the delivery was ordinary and the packaging was plain"
    text = builder.user_text({"premise": LONG_TEXT, "hypothesis": hypothesis, "label": "x"})
    premise_part, hypothesis_part = text.removeprefix("Premise: ").split("\nHypothesis: ")
    for part, original in ((premise_part, LONG_TEXT), (hypothesis_part, hypothesis)):
        assert part
        assert original.startswith(part)
        assert len(part) < len(original)
        assert builder.count_tokens(part) <= 5

    short = builder.user_text({"premise": "good", "hypothesis": "bad", "label": "x"})
    assert short == "Premise: good\nHypothesis: bad"


@pytest.mark.parametrize("name", ["qwen", "llama"])
@pytest.mark.parametrize("text", ["我喜欢猫和狗", "Ein Mädchen läuft über grünes Gras", "القطة نائمة على السرير"])
def test_truncation_never_splits_a_character(tokenizers, name, text):
    # the tiny byte-level vocabulary has no merges for these scripts: a character spans several tokens
    assert PromptBuilder(tokenizers[name], classification_prompting()).count_tokens(text) > 11
    for limit in range(1, 12):
        builder = PromptBuilder(tokenizers[name], PromptingConfig(input_columns=["t"], output_column="o",
                                                                  max_input_length=limit))  # fmt: skip
        truncated = builder.user_text({"t": text})
        assert "\ufffd" not in truncated
        assert text.startswith(truncated)
        assert builder.count_tokens(truncated) <= limit


def test_max_output_length_truncates_the_training_target(tokenizers):
    tokenizer = tokenizers["qwen"]
    prompting = PromptingConfig(input_columns=["en"], output_column="de", max_output_length=4)
    builder = PromptBuilder(tokenizer, prompting)
    target = "der grosse hund sieht die kleine rote katze und der vogel isst den apfel"
    pair = builder.training_example({"en": "the big dog sees", "de": target}, [])
    answer = pair["completion"][0]["content"]
    assert answer and target.startswith(answer) and len(answer) < len(target)
    assert builder.count_tokens(answer) <= 4
    assert pair["prompt"][-1]["content"] == "the big dog sees"  # the input is not affected
    untouched = PromptBuilder(tokenizer, PromptingConfig(input_columns=["en"], output_column="de"))
    assert untouched.training_example({"en": "x", "de": target}, [])["completion"][0]["content"] == target


@pytest.mark.parametrize("name", ["qwen", "llama"])
def test_max_seq_length_drops_in_context_examples_last_first(tokenizers, name):
    tokenizer = tokenizers[name]
    unlimited = PromptBuilder(tokenizer, classification_prompting())
    example = {"text": "the watch arrived today and it looks lovely", "label": "positive"}
    shown = pool_rows(3)
    for keep in (2, 1, 0):
        expected = unlimited.prompt(example, shown[:keep])
        limit = unlimited.count_tokens(expected)
        limited = PromptBuilder(tokenizer, classification_prompting(), max_seq_length=limit)
        assert limited.prompt(example, shown) == expected  # the input text is still whole
    full = unlimited.prompt(example, shown)
    roomy = PromptBuilder(tokenizer, classification_prompting(), max_seq_length=unlimited.count_tokens(full))
    assert roomy.prompt(example, shown) == full


@pytest.mark.parametrize("name", ["qwen", "llama"])
def test_max_seq_length_then_shortens_the_input(tokenizers, name):
    tokenizer = tokenizers[name]
    unlimited = PromptBuilder(tokenizer, classification_prompting())
    example = {"text": LONG_TEXT, "label": "positive"}
    shown = pool_rows(3)
    bare = unlimited.count_tokens(unlimited.prompt({"text": "", "label": "positive"}, []))
    for limit in (bare + 3, bare + 10, bare + 25):
        builder = PromptBuilder(tokenizer, classification_prompting(), max_seq_length=limit)
        prompt = builder.prompt(example, shown)
        assert builder.count_tokens(prompt) <= limit
        assert prompt.endswith(GENERATION_PROMPTS[name])
        assert INSTRUCTION in prompt
        assert not any(icl["text"] in prompt for icl in shown)
        kept = prompt[final_user_start(prompt, name) + len(USER_HEADERS[name]) :].split("<|")[0]
        assert kept and LONG_TEXT.startswith(kept) and len(kept) < len(LONG_TEXT)


@pytest.mark.parametrize("name", ["qwen", "llama", "no_system"])
def test_max_seq_length_is_never_exceeded(tokenizers, name):
    tokenizer = tokenizers[name]
    prompting = PromptingConfig(
        instruction=INSTRUCTION,
        input_columns=["premise", "hypothesis"],
        output_column="label",
        input_template="Premise: {premise}\nHypothesis: {hypothesis}",
    )
    examples = [
        {"premise": LONG_TEXT, "hypothesis": "the cable is standard", "label": "neutral"},
        {"premise": "ok", "hypothesis": LONG_TEXT, "label": "positive"},
        {"premise": LONG_TEXT, "hypothesis": LONG_TEXT[::-1], "label": "negative"},
        {"premise": "我喜欢猫和狗" * 8, "hypothesis": "Ein Mädchen läuft über grünes Gras", "label": "neutral"},
    ]
    shown = [{"premise": f"premise {i}", "hypothesis": f"hypothesis {i}", "label": LABELS[i]} for i in range(3)]
    bare = PromptBuilder(tokenizer, prompting).count_tokens(
        PromptBuilder(tokenizer, prompting).prompt({"premise": "", "hypothesis": "", "label": ""}, [])
    )
    for limit in range(bare + 2, bare + 120, 7):
        builder = PromptBuilder(tokenizer, prompting, max_seq_length=limit)
        for example in examples:
            prompt = builder.prompt(example, shown)
            assert builder.count_tokens(prompt) <= limit, (limit, prompt)
            assert prompt.endswith(GENERATION_PROMPTS[name])
            assert "Premise: " in prompt and "\nHypothesis: " in prompt


def test_max_seq_length_too_short_for_the_chat_format_raises(tokenizers):
    builder = PromptBuilder(tokenizers["qwen"], classification_prompting(), max_seq_length=8)
    with pytest.raises(ValueError, match="max_seq_length"):
        builder.prompt({"text": LONG_TEXT, "label": "positive"}, [])


# -- templates and reproducibility -----------------------------------------------------------------------


def test_input_template_with_two_columns(tokenizers):
    template = PromptingConfig(
        instruction="Does the premise entail the hypothesis?",
        input_columns=["premise", "hypothesis"],
        output_column="label",
        input_template="Premise: {premise}\nHypothesis: {hypothesis}",
    )
    builder = PromptBuilder(tokenizers["qwen"], template)
    example = {"premise": "a dog runs", "hypothesis": "an animal moves", "label": "entailment"}
    assert builder.user_text(example) == "Premise: a dog runs\nHypothesis: an animal moves"
    shown = {"premise": "a cat sleeps", "hypothesis": "a cat runs", "label": "contradiction"}
    prompt = builder.prompt(example, [shown])
    assert "<|im_start|>user\nPremise: a cat sleeps\nHypothesis: a cat runs<|im_end|>" in prompt
    assert "<|im_start|>assistant\ncontradiction<|im_end|>" in prompt
    assert prompt.endswith("Premise: a dog runs\nHypothesis: an animal moves<|im_end|>\n<|im_start|>assistant\n")

    plain = PromptBuilder(tokenizers["qwen"], template.model_copy(update={"input_template": None}))
    assert plain.user_text(example) == "premise: a dog runs\nhypothesis: an animal moves"


def test_same_seed_same_prompts_across_builds(tiny_llama):
    pool = Dataset.from_list(pool_rows(30))
    test = Dataset.from_list(pool_rows(6, seed=4, start=100))

    def build(seed: int) -> list[str]:
        tokenizer = AutoTokenizer.from_pretrained(tiny_llama)  # a fresh tokenizer and builder every time
        builder = PromptBuilder(tokenizer, classification_prompting(), max_seq_length=200)
        sampler = icl_sampler(pool, "label", LABELS, seed=seed, purpose="inference")
        return inference_prompts(builder, sampler, test, icl_examples=1, fixed=False)

    first = build(21)
    assert build(21) == first
    assert build(22) != first
