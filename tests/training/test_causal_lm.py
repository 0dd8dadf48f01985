"""sft.training.causal_lm and sft.model.loading: trainer defaults, LoRA training on the completion only, adapter
round trips, tokenizer chat templates and model loading arguments."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import classification_config, merge, training_sections

from sft.config import ConfigError, ModelConfig, parse_config
from sft.data.prepare import prepare_data
from sft.data.prompts import ICLSampler, PromptBuilder, inference_prompts
from sft.model.loading import load_model, load_tokenizer, quantization_config, resolve_dtype
from sft.scoring.label_scoring import label_logprobs
from sft.synthetic import CHATML_TEMPLATE, build_model, build_tokenizer
from sft.tasks import task_for
from sft.training.causal_lm import train_adapter
from sft.training.common import save_adapter, trainer_arguments

SEED = 0


def few_shot_config(data: Path, model: Path, **sections):
    return parse_config(merge(classification_config(data, model, **training_sections(shots=2, epochs=1)), sections))


def prompts_for(config, data, tokenizer, count: int = 4) -> list[str]:
    builder = PromptBuilder(tokenizer, config.prompting, config.inference.max_seq_length)
    sampler = ICLSampler.of(data, SEED, purpose="inference")
    return inference_prompts(builder, sampler, data.test.select(range(count)), 0, False)


# -- trainer arguments ---------------------------------------------------------------------------------


def test_trainer_argument_defaults(tiny_qwen, sentiment_data, tmp_path):
    from trl import SFTConfig

    config = few_shot_config(sentiment_data, tiny_qwen)
    run_folder = tmp_path / "experiment" / "seed-7"
    args = trainer_arguments(config, run_folder, seed=7)
    assert args["bf16"] is False  # no GPU here: bf16 would be slow or rejected on CPU
    assert args["report_to"] == "none"
    assert Path(args["output_dir"]).resolve().is_relative_to(run_folder.resolve())
    assert Path(args["output_dir"]).resolve() != run_folder.resolve()
    assert args["seed"] == 7
    assert args["data_seed"] == 7
    assert args["save_strategy"] == "no"
    # the user's trainer_args come through
    assert args["num_train_epochs"] == 1
    assert args["learning_rate"] == 1e-3
    # and the result is a valid SFTConfig that keeps our choices
    sft_config = SFTConfig(**args)
    assert sft_config.bf16 is False
    assert sft_config.seed == 7
    assert not sft_config.report_to or sft_config.report_to in ("none", ["none"])


def test_trainer_args_override_defaults(tiny_qwen, sentiment_data, tmp_path):
    config = few_shot_config(
        sentiment_data,
        tiny_qwen,
        training={
            "trainer_args": {
                "seed": 123,
                "report_to": "tensorboard",
                "output_dir": str(tmp_path / "elsewhere"),
                "logging_steps": 1,
                "save_strategy": "epoch",
            }
        },
    )
    args = trainer_arguments(config, tmp_path / "run", seed=7)
    assert args["seed"] == 123
    assert args["data_seed"] == 7  # not overridden: stays the run's seed
    assert args["report_to"] == "tensorboard"
    assert args["output_dir"] == str(tmp_path / "elsewhere")
    assert args["logging_steps"] == 1
    assert args["save_strategy"] == "epoch"
    assert args["bf16"] is False


def test_trainer_arguments_of_a_zero_shot_config(tiny_qwen, sentiment_data, tmp_path):
    config = parse_config(classification_config(sentiment_data, tiny_qwen))
    args = trainer_arguments(config, tmp_path, seed=3)
    assert args["seed"] == 3
    assert args["bf16"] is False


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
    import trl

    config, data, tokenizer, prompts = setup
    model = load_model(config.model, trainable=True)
    base_scores = label_logprobs(model, tokenizer, prompts, data.labels)
    template, pad_token, padding_side = tokenizer.chat_template, tokenizer.pad_token, tokenizer.padding_side
    trainers = []

    class RecordingSFTTrainer(trl.SFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    run_folder = tmp_path_factory.mktemp("train-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trl, "SFTTrainer", RecordingSFTTrainer)
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


# -- load_tokenizer ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_template_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("no-template")
    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    return folder


def test_missing_chat_template_is_a_config_error(no_template_folder):
    with pytest.raises(ConfigError) as error:
        load_tokenizer(ModelConfig(name=str(no_template_folder)))
    message = str(error.value)
    assert "model.chat_template" in message
    assert "model.chat_template_from" in message
    assert str(no_template_folder) in message


def test_chat_template_string(no_template_folder):
    tokenizer = load_tokenizer(ModelConfig(name=str(no_template_folder), chat_template=CHATML_TEMPLATE))
    assert tokenizer.chat_template == CHATML_TEMPLATE
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_file(no_template_folder, tmp_path):
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    path = tmp_path / "template.jinja"
    path.write_text(template, encoding="utf-8")
    tokenizer = load_tokenizer(ModelConfig(name=str(no_template_folder), chat_template=str(path)))
    assert tokenizer.chat_template == template
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert rendered == "[user] hi\n"


def test_chat_template_file_that_does_not_exist_is_a_config_error(no_template_folder, tmp_path):
    """A mistyped template path must not become the template itself: it would render every prompt as the path."""
    missing = tmp_path / "templates" / "chat.jinja"
    with pytest.raises(ConfigError) as error:
        load_tokenizer(ModelConfig(name=str(no_template_folder), chat_template=str(missing)))
    assert "model.chat_template" in str(error.value)
    assert str(missing) in str(error.value)


def test_chat_template_from_another_model(no_template_folder, tiny_llama):
    from transformers import AutoTokenizer

    donor = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer = load_tokenizer(ModelConfig(name=str(no_template_folder), chat_template_from=str(tiny_llama)))
    assert tokenizer.chat_template == donor.chat_template
    assert "<|start_header_id|>" in tokenizer.chat_template


def test_chat_template_from_a_model_without_one(no_template_folder):
    with pytest.raises(ConfigError, match="chat_template_from"):
        load_tokenizer(ModelConfig(name=str(no_template_folder), chat_template_from=str(no_template_folder)))


def test_chat_template_overrides_the_models_own(tiny_qwen):
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_qwen), chat_template="{{ messages[0]['content'] }}"))
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "hi"


def test_pad_token_is_set(tmp_path):
    tokenizer = build_tokenizer("chatml")
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(ModelConfig(name=str(tmp_path)))
    assert loaded.pad_token is not None
    assert loaded.pad_token == loaded.eos_token
    assert loaded.pad_token_id is not None
    # a batch pads without error
    batch = loaded(["a", "a longer text"], padding=True)
    assert len(batch["input_ids"][0]) == len(batch["input_ids"][1])


def test_existing_pad_token_is_kept(tiny_qwen):
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_qwen)))
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token != tokenizer.eos_token


# -- load_model ----------------------------------------------------------------------------------------


@pytest.fixture
def from_pretrained_calls(monkeypatch):
    """Record the arguments of AutoModelForCausalLM / AutoTokenizer.from_pretrained, still calling the real ones."""
    import transformers

    calls = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = cls.from_pretrained

        def spy(name, *args, _real=real, _cls=cls, **kwargs):
            calls.append((_cls.__name__, name, kwargs))
            return _real(name, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    return calls


def test_remote_code_is_off_by_default(tiny_qwen, from_pretrained_calls):
    config = ModelConfig(name=str(tiny_qwen))
    load_tokenizer(config)
    model = load_model(config)
    assert model is not None
    assert [cls for cls, _, _ in from_pretrained_calls] == ["AutoTokenizer", "AutoModelForCausalLM"]
    for _, name, kwargs in from_pretrained_calls:
        assert name == str(tiny_qwen)
        assert kwargs.get("trust_remote_code") is False


def test_remote_code_when_the_config_asks(tiny_qwen, from_pretrained_calls):
    config = ModelConfig(name=str(tiny_qwen), trust_remote_code=True)
    load_tokenizer(config)
    load_model(config)
    assert len(from_pretrained_calls) == 2
    assert all(kwargs.get("trust_remote_code") is True for _, _, kwargs in from_pretrained_calls)


def test_model_args_reach_from_pretrained(tiny_qwen, from_pretrained_calls):
    model = load_model(ModelConfig(name=str(tiny_qwen), model_args={"attn_implementation": "eager"}))
    (_, _, kwargs) = from_pretrained_calls[-1]
    assert kwargs["attn_implementation"] == "eager"
    assert model.config._attn_implementation == "eager"


def test_resolve_dtype():
    config = ModelConfig(name="any")
    assert resolve_dtype(config, "cpu") is torch.float32
    assert resolve_dtype(config, "cuda") == "auto"
    assert resolve_dtype(ModelConfig(name="any", dtype="bfloat16"), "cpu") is torch.bfloat16
    assert resolve_dtype(ModelConfig(name="any", dtype="float16"), "cuda:0") is torch.float16


def test_bfloat16_checkpoint_loads_in_float32_on_cpu(tmp_path):
    tokenizer = build_tokenizer("chatml")
    model = build_model(tokenizer, "qwen2", seed=0).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_model(ModelConfig(name=str(tmp_path), device="cpu"))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    explicit = load_model(ModelConfig(name=str(tmp_path), device="cpu", dtype="bfloat16"))
    assert {p.dtype for p in explicit.parameters()} == {torch.bfloat16}


def test_load_model_is_in_eval_mode(tiny_qwen):
    assert not load_model(ModelConfig(name=str(tiny_qwen))).training


def test_unknown_quantization_class(tiny_qwen, from_pretrained_calls):
    config = ModelConfig(name=str(tiny_qwen), quantization={"config_class": "BitsAndBytesConfg"})
    with pytest.raises(ConfigError) as error:
        quantization_config(config)
    message = str(error.value)
    assert "model.quantization.config_class" in message
    assert "'BitsAndBytesConfg'" in message
    assert "did you mean 'BitsAndBytesConfig'" in message
    known = message.split("known:", 1)[1]
    assert "BitsAndBytesConfig" in known and "GPTQConfig" in known
    # load_model fails the same way before loading anything
    with pytest.raises(ConfigError, match="BitsAndBytesConfg"):
        load_model(config)
    assert from_pretrained_calls == []


def test_quantization_arguments_rejected_by_the_class():
    config = ModelConfig(
        name="any",
        quantization={"config_class": "BitsAndBytesConfig", "args": {"load_in_4bit": True, "load_in_8bit": True}},
    )
    with pytest.raises(ConfigError, match=r"model\.quantization\.args: BitsAndBytesConfig rejected"):
        quantization_config(config)


def test_no_quantization_by_default():
    assert quantization_config(ModelConfig(name="any")) is None
