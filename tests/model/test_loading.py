"""sft.model.loading: tokenizer chat templates and pad token, model loading arguments, dtype and quantization."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sft.config import ConfigError, ModelConfig
from sft.model.loading import load_model, load_tokenizer, quantization_config, resolve_dtype
from sft.synthetic import CHATML_TEMPLATE, build_model, build_tokenizer

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


def _adalora_adapter(model_path: Path, folder: Path) -> Path:
    """An AdaLoRA adapter whose rank allocation kept ranks 0 and 2 of 4 in every layer, saved as PEFT saves it."""
    import warnings

    from peft import AdaLoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = AdaLoraConfig(init_r=4, target_r=2, total_step=10, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_path), config)
    names = [name for name, _ in model.base_model.model.named_parameters() if "lora_E" in name]
    model.peft_config["default"].rank_pattern = {name: [True, False, True, False] for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(str(folder))
    return folder


def test_an_adalora_adapter_loads_its_kept_ranks_without_peft_s_false_pattern_warning(tiny_llama, tmp_path, recwarn):
    """PEFT's check of rank_pattern keys reads AdaLoRA's (lora_E parameter names holding masks) as unmatched and
    "ignored"; they are applied: the loaded layers hold the two ranks kept. A LoRA-style typo still warns."""
    import warnings

    from sft.model.loading import ADALORA_RANK_PATTERN

    folder = _adalora_adapter(tiny_llama, tmp_path / "adapter")
    loaded = load_model(ModelConfig(name=str(tiny_llama)), adapter=str(folder))
    assert not [warning for warning in recwarn if "rank_pattern keys" in str(warning.message)]
    assert {tuple(value.shape) for name, value in loaded.named_parameters() if "lora_E" in name} == {(2, 1)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ADALORA_RANK_PATTERN)
        with pytest.warns(RuntimeWarning, match="rank_pattern keys did not match"):
            warnings.warn(
                "The following rank_pattern keys did not match any targeted module and were ignored: ['q_prj'].",
                RuntimeWarning,
                stacklevel=1,
            )
