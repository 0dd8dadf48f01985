"""sft.predictors.generation: batched greedy generation with left padding equals generating every prompt alone."""

from __future__ import annotations

import pytest
import torch

from sft.predictors.generation import generate, stop_token_ids

GREEDY = {"do_sample": False, "max_new_tokens": 5}
SOURCES = [
    "the dog",
    "the big red house sees the small cat",
    "the cat eats the apple and the bird sees the big red house of the small dog",
    "the small bird eats",
]


@pytest.fixture(scope="module")
def prompts(tiny_loaded):
    _, tokenizer = tiny_loaded
    rendered = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": "Translate English to German."}, {"role": "user", "content": source}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for source in SOURCES
    ]
    lengths = [len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in rendered]
    assert len(set(lengths)) == len(lengths), "prompts of different lengths make batches padded"
    return rendered


def greedy_reference(model, tokenizer, prompt: str, max_new_tokens: int, stops: list[int]) -> str:
    """Greedy decoding by hand: full forward pass, argmax, append; no padding, no cache, no generate()."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([ids + new])).logits[0, -1]
            token = int(logits.argmax())
            new.append(token)
            if token in stops:
                break
    return tokenizer.decode(new, skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def alone(tiny_loaded, prompts):
    model, tokenizer = tiny_loaded
    return [generate(model, tokenizer, [prompt], batch_size=1, generation_args=GREEDY) for prompt in prompts]


def test_single_prompt_generation_matches_manual_greedy_decoding(tiny_loaded, prompts, alone):
    model, tokenizer = tiny_loaded
    stops = stop_token_ids(model, tokenizer)
    for prompt, (output,) in zip(prompts, alone):
        assert output == greedy_reference(model, tokenizer, prompt, GREEDY["max_new_tokens"], stops)


@pytest.mark.parametrize("batch_size", [2, 3, 8])
def test_batched_generation_equals_generating_each_prompt_alone(tiny_loaded, prompts, alone, batch_size):
    model, tokenizer = tiny_loaded
    batched = generate(model, tokenizer, prompts, batch_size=batch_size, generation_args=GREEDY)
    assert len(batched) == len(prompts)
    assert batched == [output for (output,) in alone]


def test_outputs_are_in_prompt_order(tiny_loaded, prompts, alone):
    """generate sorts prompts by length internally; the outputs must come back in the caller's order."""
    model, tokenizer = tiny_loaded
    order = [2, 0, 3, 1]
    outputs = generate(model, tokenizer, [prompts[i] for i in order], batch_size=4, generation_args=GREEDY)
    assert outputs == [alone[i][0] for i in order]


def test_output_never_contains_the_prompt(tiny_loaded, prompts):
    model, tokenizer = tiny_loaded
    outputs = generate(model, tokenizer, prompts, batch_size=4, generation_args=GREEDY)
    for source, prompt, output in zip(SOURCES, prompts, outputs):
        assert isinstance(output, str)
        assert prompt not in output
        assert source not in output
        assert "Translate English to German." not in output
        assert output == output.strip()


def test_stop_token_ids_include_the_end_of_turn_token(tiny_loaded):
    model, tokenizer = tiny_loaded
    end_of_turn = tokenizer.convert_tokens_to_ids(
        "<|eot_id|>" if "<|eot_id|>" in tokenizer.get_vocab() else "<|im_end|>"
    )
    assert end_of_turn == tokenizer.eos_token_id
    assert end_of_turn in stop_token_ids(model, tokenizer)


def test_stop_token_ids_keep_the_end_of_turn_token_when_the_model_ends_text_with_another(tiny_loaded, monkeypatch):
    """Base-model generation configs often name <|endoftext|>-like tokens; chat turns end with the tokenizer's."""
    model, tokenizer = tiny_loaded
    other = tokenizer.pad_token_id
    assert other != tokenizer.eos_token_id
    monkeypatch.setattr(model.generation_config, "eos_token_id", other)
    assert set(stop_token_ids(model, tokenizer)) == {other, tokenizer.eos_token_id}
    monkeypatch.setattr(model.generation_config, "eos_token_id", [other, tokenizer.eos_token_id])
    ids = stop_token_ids(model, tokenizer)
    assert sorted(ids) == sorted([other, tokenizer.eos_token_id])
    monkeypatch.setattr(model.generation_config, "eos_token_id", None)
    assert stop_token_ids(model, tokenizer) == [tokenizer.eos_token_id]


def test_generation_stops_at_the_end_of_turn_token(tiny_loaded, prompts, monkeypatch):
    """Steer the model to say 'der', end its turn, then go on with more words: only 'der' may come out."""
    model, tokenizer = tiny_loaded
    original_forward = model.forward
    script = [tokenizer.convert_tokens_to_ids("der"), tokenizer.eos_token_id]
    filler = tokenizer(" katze", add_special_tokens=False)["input_ids"][0]
    steps = []
    # only the tokenizer's end-of-turn token, which generate() adds itself, can stop generation
    monkeypatch.setattr(model.generation_config, "eos_token_id", None)

    def forward(*args, **kwargs):
        output = original_forward(*args, **kwargs)
        token = script[len(steps)] if len(steps) < len(script) else filler
        steps.append(token)
        output.logits[:, -1, token] = output.logits.max() + 100.0
        return output

    monkeypatch.setattr(model, "forward", forward)
    outputs = generate(model, tokenizer, prompts[:2], batch_size=2, generation_args={"max_new_tokens": 5})
    assert outputs == ["der", "der"]
    assert len(steps) == 2, "generation went on after every sequence had ended its turn"


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_side_is_restored(tiny_loaded, prompts, side, monkeypatch):
    model, tokenizer = tiny_loaded
    monkeypatch.setattr(tokenizer, "padding_side", side)
    generate(model, tokenizer, prompts[:2], batch_size=2, generation_args=GREEDY)
    assert tokenizer.padding_side == side


def test_padding_side_is_restored_after_an_error(tiny_loaded, prompts, monkeypatch):
    model, tokenizer = tiny_loaded
    monkeypatch.setattr(tokenizer, "padding_side", "right")
    with pytest.raises(ValueError):
        generate(model, tokenizer, prompts[:2], batch_size=2, generation_args={"max_new_tokens": -1})
    assert tokenizer.padding_side == "right"
