"""sft.training.causal_lm: LoRA training on the completion only, adapter round trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import classification_config, merge, training_sections
from trl import SFTTrainer

import sft.training.causal_lm
from sft.config import parse_config
from sft.data.prepare import prepare_data
from sft.data.prompts import ICLSampler, PromptBuilder, inference_prompts
from sft.model.loading import load_model, load_tokenizer
from sft.scoring.label_scoring import label_logprobs
from sft.tasks import task_for
from sft.training.causal_lm import train_adapter
from sft.training.common import save_adapter

SEED = 0


def few_shot_config(data: Path, model: Path, **sections):
    return parse_config(merge(classification_config(data, model, **training_sections(shots=2, epochs=1)), sections))


def prompts_for(config, data, tokenizer, count: int = 4) -> list[str]:
    builder = PromptBuilder(tokenizer, config.prompting, config.inference.max_seq_length)
    sampler = ICLSampler.of(data, SEED, purpose="inference")
    return inference_prompts(builder, sampler, data.test.select(range(count)), 0, False)


# -- LoRA and training ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tiny_qwen, sentiment_data):
    config = few_shot_config(sentiment_data, tiny_qwen)
    data = prepare_data(config, SEED)
    tokenizer = load_tokenizer(config.model)
    return config, data, tokenizer, prompts_for(config, data, tokenizer)


@pytest.mark.parametrize("init_lora_weights", [True, False])
def test_lora_with_zero_b_matrices_leaves_the_scores_unchanged(setup, init_lora_weights):
    """PEFT's default initialization (B = 0) starts the adapted model exactly at the base model; a random
    initialization (init_lora_weights=False) does not, which shows the comparison can tell them apart."""
    from peft import LoraConfig, get_peft_model

    config, data, tokenizer, prompts = setup
    base = load_model(config.model)
    before = label_logprobs(base, tokenizer, prompts, data.labels)
    torch.manual_seed(0)
    kwargs = {**config.lora.peft_kwargs(), "init_lora_weights": init_lora_weights}
    adapted = get_peft_model(base, LoraConfig(**kwargs))
    adapted.eval()
    b_matrices = [p for name, p in adapted.named_parameters() if "lora_B" in name]
    a_matrices = [p for name, p in adapted.named_parameters() if "lora_A" in name]
    assert b_matrices and a_matrices
    assert all(p.abs().max() > 0 for p in a_matrices)
    after = label_logprobs(adapted, tokenizer, prompts, data.labels)
    if init_lora_weights:
        assert all((p == 0).all() for p in b_matrices)
        assert torch.equal(before, after) or (before - after).abs().max() <= 1e-6
    else:
        assert (before - after).abs().max() > 1e-4


@pytest.fixture(scope="module")
def trained(setup, tmp_path_factory):
    """Train once with train_adapter, recording the SFTTrainer it builds (a subclass that only keeps a reference)."""
    config, data, tokenizer, prompts = setup
    model = load_model(config.model, trainable=True)
    base_scores = label_logprobs(model, tokenizer, prompts, data.labels)
    template, pad_token, padding_side = tokenizer.chat_template, tokenizer.pad_token, tokenizer.padding_side
    trainers = []

    class RecordingSFTTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    run_folder = tmp_path_factory.mktemp("train-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft.training.causal_lm, "SFTTrainer", RecordingSFTTrainer)  # the name train_adapter calls
        result = train_adapter(config, task_for(config), data, model, tokenizer, SEED, run_folder)
    peft_model, stats = result.model, result.stats
    assert len(trainers) == 1
    # training must not change the tokenizer that inference goes on using
    assert (tokenizer.chat_template, tokenizer.pad_token, tokenizer.padding_side) == (template, pad_token, padding_side)
    return {
        "model": peft_model,
        "stats": stats,
        "trainer": trainers[0],
        "base_scores": base_scores,
        "run_folder": run_folder,
    }


@pytest.mark.slow
def test_train_adapter_statistics(setup, trained):
    _, data, _, _ = setup
    stats = trained["stats"]
    assert stats["train_examples"] == len(data.shots) == 2 * len(data.labels)
    assert math.isfinite(stats["train_loss"]) and stats["train_loss"] > 0
    # 6 examples, batch size 4, 1 epoch
    assert stats["train_steps"] == 2
    assert 0 < stats["trainable_parameters"] < stats["total_parameters"]


@pytest.mark.slow
def test_training_changes_the_label_scores(setup, trained):
    _, data, tokenizer, prompts = setup
    model = trained["model"]
    assert not model.training
    after = label_logprobs(model, tokenizer, prompts, data.labels)
    assert torch.isfinite(after).all()
    assert (after - trained["base_scores"]).abs().max() > 1e-3
    # LoRA trains only the adapter: B matrices have left zero
    assert any(p.abs().max() > 0 for name, p in model.named_parameters() if "lora_B" in name)


@pytest.mark.slow
def test_loss_covers_only_the_answer(setup, trained):
    """In the trainer's tokenized dataset, exactly the assistant answer (and its end-of-turn) is unmasked, and the
    masked prompt is token for token the prompt inference builds for the same example."""
    config, data, tokenizer, _ = setup
    dataset = trained["trainer"].train_dataset
    assert len(dataset) == len(data.shots)
    builder = PromptBuilder(tokenizer, config.prompting)
    shots_by_text = {shot["text"]: shot for shot in data.shots}
    for row in dataset:
        ids = row["input_ids"]
        if "completion_mask" in row:
            loss_mask = [bool(bit) for bit in row["completion_mask"]]
        else:
            loss_mask = [label != -100 for label in row["labels"]]
            assert all(label in (-100, token) for label, token in zip(row["labels"], ids))
        start = loss_mask.index(True)
        assert all(loss_mask[start:]), "the loss mask must cover one contiguous answer at the end"
        assert not any(loss_mask[:start])

        user_turn = row["prompt"][-1]["content"]
        shot = shots_by_text[user_turn]
        expected_prompt = builder.prompt(shot, [])
        assert ids[:start] == tokenizer(expected_prompt, add_special_tokens=False)["input_ids"]

        answer_ids = ids[start:]
        answer = shot[config.prompting.output_column]
        decoded = tokenizer.decode(answer_ids)
        assert decoded.startswith(answer)
        assert tokenizer.eos_token_id in answer_ids  # the model learns to end its turn
        assert decoded[len(answer) :].replace(tokenizer.eos_token, "").strip() == ""


@pytest.mark.slow
def test_saved_adapter_reloads_to_the_same_scores(setup, trained, tmp_path):
    config, data, tokenizer, prompts = setup
    model = trained["model"]
    expected = label_logprobs(model, tokenizer, prompts, data.labels)
    folder = save_adapter(model, tokenizer, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file()
    assert any(folder.glob("adapter_model.*"))
    assert (folder / "tokenizer_config.json").is_file()

    reloaded = load_model(config.model, adapter=str(folder))
    assert not reloaded.training
    assert not any(p.requires_grad for name, p in reloaded.named_parameters() if "lora_" in name)
    trainable = load_model(config.model, adapter=str(folder), trainable=True)
    assert any(p.requires_grad for name, p in trainable.named_parameters() if "lora_" in name)
    scores = label_logprobs(reloaded, tokenizer, prompts, data.labels)
    assert (scores - expected).abs().max() <= 1e-5
    assert (scores - trained["base_scores"]).abs().max() > 1e-3

    saved_tokenizer = load_tokenizer(config.model, path=str(folder))
    assert saved_tokenizer.chat_template == tokenizer.chat_template
    assert label_logprobs(reloaded, saved_tokenizer, prompts, data.labels).sub(expected).abs().max() <= 1e-5
