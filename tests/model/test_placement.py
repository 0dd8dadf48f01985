"""sft.model.placement: `model_args.parallelize` balances the layers with accelerate (also of a quantized model);
placement arguments are checked."""

from __future__ import annotations

import pytest
import torch
from helpers.lora import BNB, logits

from sft.config import ModelConfig
from sft.model.loading import load_model

# -- parallelize ---------------------------------------------------------------------------------------------


@pytest.fixture
def from_pretrained_kwargs(monkeypatch):
    from transformers import AutoModelForCausalLM

    calls = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, name, **kwargs):
        calls.append(kwargs)
        return original(cls, name, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    return calls


def test_parallelize_balances_with_accelerate_on_the_cpu(tiny_model, from_pretrained_kwargs, monkeypatch):
    import sft.model.placement

    maps = []
    original = sft.model.placement.infer_auto_device_map

    def spy(model, **kwargs):
        maps.append(kwargs["no_split_module_classes"])
        return original(model, **kwargs)

    monkeypatch.setattr(sft.model.placement, "infer_auto_device_map", spy)  # where placement calls it
    reference = logits(load_model(ModelConfig(name=str(tiny_model))))
    model = load_model(ModelConfig(name=str(tiny_model), model_args={"parallelize": True}))
    kwargs = from_pretrained_kwargs[-1]
    assert "parallelize" not in kwargs and "no_split_module_classes" not in kwargs
    assert set(kwargs["device_map"].values()) == {"cpu"}  # the only device here
    assert maps == [list(model._no_split_modules)] and maps[0]  # the decoder layer class
    assert torch.allclose(logits(model), reference, atol=1e-5)

    # a user's no_split_module_classes replaces the model's own
    load_model(ModelConfig(name=str(tiny_model), model_args={"parallelize": True, "no_split_module_classes": ["X"]}))
    assert maps[-1] == ["X"]


def test_parallelize_a_quantized_model(tiny_llama):
    config = ModelConfig(
        name=str(tiny_llama),
        model_args={"parallelize": True},
        quantization={"config_class": "BitsAndBytesConfig", "args": BNB["nf4"]},
    )
    model = load_model(config)
    assert torch.isfinite(logits(model)).all()
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())


@pytest.mark.parametrize(
    ("model_args", "device", "message"),
    [
        ({"parallelize": "yes"}, None, "parallelize must be true or false"),
        ({"parallelize": True, "device_map": "auto"}, None, "don't set both"),
        ({"parallelize": True}, "cuda:1", "remove model.device"),
        ({"no_split_module_classes": "LlamaDecoderLayer"}, None, "list of module class names"),
    ],
)
def test_placement_arguments_are_checked(model_args, device, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(name="any", model_args=model_args, device=device)
