"""sft.training.batching: padding-free training batches that are correct by construction. The loss covers
the answers only, a packed batch's per-example losses equal one-at-a-time losses, no attention crosses an
example, the adapter equals padded training's, and what the batching measured lands in the statistics."""

from __future__ import annotations

import pytest
import torch
from helpers import classification_config, merge, training_sections
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from sft.config import parse_config
from sft.data.prepare import prepare_data
from sft.model.loading import load_model, load_tokenizer
from sft.tasks import task_for
from sft.training.batching import (
    FLASH_ATTENTION,
    LENGTH_GROUPED,
    PADDED_BATCHES,
    PADDING_FREE,
    VARLEN_SDPA,
    Batching,
    TokenCount,
    batch_tokens,
    packed_attention,
    throughput_stats,
    varlen_sdpa,
)
from sft.training.causal_lm import prepare_trainer, train_adapter
from sft.training.head import head_batching, training_arguments

SEED = 0


def config_of(data, model, shots: int = 2, icl: int = 0, batching: str | None = None, **trainer_args):
    sections = training_sections(shots=shots, epochs=1)
    training = {**sections["training"], "icl_examples": icl}
    training["trainer_args"] = {**training["trainer_args"], **trainer_args}
    if batching is not None:
        training["batching"] = batching
    return parse_config(merge(classification_config(data, model, **sections), {"training": training}))


# -- choices and statistics (no model) -------------------------------------------------------------------


def test_packed_attention_keeps_kernels_that_take_packed_rows():
    assert packed_attention("sdpa", half_on_gpu=False, flash_installed=True) == VARLEN_SDPA
    assert packed_attention("sdpa", half_on_gpu=True, flash_installed=False) == VARLEN_SDPA
    assert packed_attention("sdpa", half_on_gpu=True, flash_installed=True) == FLASH_ATTENTION[0]
    assert packed_attention("flash_attention_3", half_on_gpu=True, flash_installed=False) == "flash_attention_3"
    assert packed_attention("eager", half_on_gpu=False, flash_installed=False) == "eager"
    assert packed_attention("my_model_own_attention", half_on_gpu=False, flash_installed=False) is None


def test_throughput_statistics_count_tokens_and_padding():
    padded = {"input_ids": torch.zeros(2, 5), "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])}
    assert batch_tokens(padded) == TokenCount(tokens=7, positions=10)
    assert batch_tokens({"input_ids": torch.zeros(1, 7), "position_ids": torch.zeros(1, 7)}) == TokenCount(7, 7)
    stats = throughput_stats([TokenCount(7, 10), TokenCount(3, 4)], 2.0, Batching(PADDED_BATCHES, "sdpa"))
    assert stats == {
        "batching_used": "padded",
        "attention": "sdpa",
        "train_tokens": 10,
        "tokens_per_second": 5.0,
        "padding_share": round(4 / 14, 4),
    }


def test_batching_default_keeps_hashes_and_opting_out_changes_the_training_key(sentiment_data, tiny_qwen):
    default = config_of(sentiment_data, tiny_qwen)
    spelled = config_of(sentiment_data, tiny_qwen, batching="fastest")
    padded = config_of(sentiment_data, tiny_qwen, batching="padded")
    assert default.training.batching == "fastest"
    assert spelled.config_hash() == default.config_hash() and spelled.training_key() == default.training_key()
    # a head's length-grouped batches (and LoRA dropout masks drawn per batch shape) change the adapter
    assert padded.training_key() != default.training_key()


def test_head_mode_groups_batches_by_length(sentiment_data, tiny_qwen, tmp_path):
    fastest = config_of(sentiment_data, tiny_qwen)
    padded = config_of(sentiment_data, tiny_qwen, batching="padded")
    assert training_arguments(fastest, tmp_path, SEED)["train_sampling_strategy"] == "group_by_length"
    assert "train_sampling_strategy" not in training_arguments(padded, tmp_path, SEED)
    assert head_batching(fastest).used == LENGTH_GROUPED and head_batching(padded).used == PADDED_BATCHES


def test_varlen_sdpa_equals_block_diagonal_attention():
    """The per-example blocks (the path taken when the collator's boundaries arrive) compute what SDPA
    with a block-diagonal causal mask over the whole row computes; without boundaries it is plain SDPA."""
    from types import SimpleNamespace

    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, 4, 9, 8, generator=generator) for _ in range(3))
    module = SimpleNamespace(num_key_value_groups=1, is_causal=True)
    bounds = torch.tensor([0, 4, 6, 9], dtype=torch.int32)
    packed, _ = varlen_sdpa(module, query, key, value, None, cu_seq_lens_q=bounds)
    example = torch.repeat_interleave(torch.arange(3), bounds.diff())
    mask = (example[:, None] == example[None, :]) & torch.ones(9, 9, dtype=torch.bool).tril()
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask[None, None])
    assert torch.allclose(packed, expected.transpose(1, 2), atol=1e-6)
    plain, _ = varlen_sdpa(module, query, key, value, None)
    assert not torch.allclose(plain, packed, atol=1e-3)  # one causal sequence: attention crosses the blocks


# -- the trainer's own batches ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(sentiment_data, tiny_qwen, tmp_path_factory):
    """The SFTTrainer train_adapter would run, on prompts with one in-context example per label, and its
    tokenized examples (labels -100 outside the answer), without training."""
    config = config_of(sentiment_data, tiny_qwen, shots=2, icl=1)
    data = prepare_data(config, SEED)
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, trainable=True)
    ready = prepare_trainer(config, task_for(config), data, model, tokenizer, SEED, tmp_path_factory.mktemp("run"))
    assert ready.batching == Batching(PADDING_FREE, VARLEN_SDPA)
    rows = [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in ready.trainer.train_dataset]
    return ready.trainer, rows, tokenizer


def logits_of(model, batch) -> torch.Tensor:
    """The trainer's forward (TRL passes use_cache=False), without dropout."""
    model.eval()
    with torch.no_grad():
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        return model(**inputs, use_cache=False).logits.float()


def losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy of the next token (0 where its label is -100, and at the last position)."""
    next_token = torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=-100, reduction="none")
    return torch.cat([next_token * (labels[1:] != -100), next_token.new_zeros(1)])


def split_row(values: torch.Tensor, rows: list[dict]) -> list[torch.Tensor]:
    return list(values.split([len(row["input_ids"]) for row in rows]))


@pytest.mark.slow
def test_padding_free_batch_supervises_only_the_answers(prepared):
    """The packed row's labels are each example's labels (the answer tokens only; the prompt with its
    in-context examples and their answers masked), and nothing is learned across an example boundary."""
    trainer, rows, tokenizer = prepared
    batch = trainer.data_collator(rows)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    for row, labels, positions in zip(
        rows, split_row(batch["labels"][0], rows), split_row(batch["position_ids"][0], rows)
    ):
        assert positions.tolist() == list(range(len(row["input_ids"])))
        supervised = [token for token in labels.tolist() if token != -100]
        answer = tokenizer.decode(supervised).replace(tokenizer.eos_token, "").strip()
        assert answer in {"negative", "neutral", "positive"}
        assert labels.tolist() == row["labels"]  # the first token is a prompt token: masked either way
        prompt = tokenizer.decode(row["input_ids"][: row["labels"].index(supervised[0])])
        assert sum(prompt.count(label) for label in ("negative", "neutral", "positive")) >= 3  # the in-context answers


@pytest.mark.slow
def test_packed_losses_equal_one_at_a_time(prepared):
    trainer, rows, _ = prepared
    batch = trainer.data_collator(rows)
    packed = split_row(losses(logits_of(trainer.model, batch)[0], batch["labels"][0]), rows)
    padded = DataCollatorForLanguageModeling(pad_token_id=0)
    for row, packed_losses in zip(rows, packed):
        alone = losses(logits_of(trainer.model, padded([row]))[0], torch.tensor(row["labels"]))
        # an example's last position predicts the next example's first token, which TRL masks
        assert torch.allclose(packed_losses, alone, atol=1e-5)
        assert packed_losses.sum() > 0


@pytest.mark.slow
def test_no_attention_crosses_an_example(prepared):
    """Changing the middle example's tokens moves no logit of the others; the same row with position ids
    that do not restart (one long sequence) does move them, so the check can tell."""
    trainer, rows, _ = prepared
    changed = [dict(row) for row in rows]
    changed[1] = {**rows[1], "input_ids": [(token * 7 + 3) % 200 + 5 for token in rows[1]["input_ids"]]}
    before = split_row(logits_of(trainer.model, trainer.data_collator(rows))[0], rows)
    after = split_row(logits_of(trainer.model, trainer.data_collator(changed))[0], rows)
    assert (before[1] - after[1]).abs().max() > 1e-3
    for index in (0, *range(2, len(rows))):
        assert torch.equal(before[index], after[index]) or (before[index] - after[index]).abs().max() <= 1e-6

    def one_sequence(examples):
        batch = trainer.data_collator(examples)
        length = batch["input_ids"].shape[1]
        return {"input_ids": batch["input_ids"], "position_ids": torch.arange(length)[None]}

    crossing_before = split_row(logits_of(trainer.model, one_sequence(rows))[0], rows)
    crossing_after = split_row(logits_of(trainer.model, one_sequence(changed))[0], rows)
    assert (crossing_before[2] - crossing_after[2]).abs().max() > 1e-4


@pytest.mark.slow
def test_adapter_equals_padded_training(sentiment_data, tiny_qwen, tmp_path):
    """Three optimizer steps with the same order and seed: padding-free and padded training give the same
    adapter within float noise, and record their batching, throughput and padding share."""
    trained = {}
    for batching in ("fastest", "padded"):
        config = config_of(sentiment_data, tiny_qwen, shots=4, batching=batching, max_steps=3)
        data = prepare_data(config, SEED)
        tokenizer = load_tokenizer(config.model)
        model = load_model(config.model, trainable=True)
        result = train_adapter(config, task_for(config), data, model, tokenizer, SEED, tmp_path / batching)
        assert model.config._attn_implementation == "sdpa"  # restored for inference
        trained[batching] = result
    fast, padded = trained["fastest"], trained["padded"]
    assert fast.stats["batching_used"] == PADDING_FREE and padded.stats["batching_used"] == PADDED_BATCHES
    assert fast.stats["padding_share"] == 0 and padded.stats["padding_share"] > 0
    assert fast.stats["train_tokens"] == padded.stats["train_tokens"] > 0
    assert fast.stats["tokens_per_second"] > 0 and fast.stats["train_steps"] == padded.stats["train_steps"] == 3
    assert abs(fast.stats["train_loss"] - padded.stats["train_loss"]) <= 1e-4 * abs(padded.stats["train_loss"])
    weights = {name: p for name, p in padded.model.named_parameters() if "lora_" in name}
    moved = 0.0
    for name, parameter in fast.model.named_parameters():
        if "lora_" in name:
            assert torch.allclose(parameter, weights[name], atol=1e-5, rtol=1e-4), name
            moved = max(moved, float(parameter.abs().max()))
    assert moved > 0


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_padding_free_losses_equal_one_at_a_time(sentiment_data, tiny_qwen, tmp_path):
    """On CUDA in bf16: flash-attention's varlen kernels where installed, else SDPA per example; a packed
    row's losses equal one-at-a-time ones within bf16 noise."""
    config = parse_config(
        merge(
            classification_config(sentiment_data, tiny_qwen, **training_sections(shots=2)),
            {"model": {"name": str(tiny_qwen), "device": "cuda", "dtype": "bfloat16"}},
        )
    )
    data = prepare_data(config, SEED)
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, trainable=True)
    ready = prepare_trainer(config, task_for(config), data, model, tokenizer, SEED, tmp_path)
    assert ready.batching.used == PADDING_FREE and ready.batching.attention in (*FLASH_ATTENTION, VARLEN_SDPA)
    rows = [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in ready.trainer.train_dataset]
    batch = {key: value.cuda() for key, value in ready.trainer.data_collator(rows).items() if torch.is_tensor(value)}
    packed = split_row(losses(logits_of(ready.trainer.model, batch)[0], batch["labels"][0]), rows)
    padded = DataCollatorForLanguageModeling(pad_token_id=0)
    for row, packed_losses in zip(rows, packed):
        single = {key: value.cuda() for key, value in padded([row]).items()}
        alone = losses(logits_of(ready.trainer.model, single)[0], single["labels"][0])
        assert torch.allclose(packed_losses, alone, atol=3e-2)
