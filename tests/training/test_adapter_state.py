"""Model selection keeps the best evaluation's adapter as PEFT's state dict and puts it back: that round
trip must restore every method's outputs exactly (AdaLoRA's after its rank pattern was fixed too)."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from sft.config import LoraSection
from sft.config.adapters import ADAPTERS
from sft.model.adapters import peft_config
from sft.synthetic import build_model, build_tokenizer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", list(ADAPTERS))
def test_the_state_dict_round_trip_restores_every_method(method):
    tokenizer = build_tokenizer("chatml")
    model = build_model(tokenizer, "llama", seed=1, hidden_size=32, layers=1, initializer_range=0.2)
    peft_model = get_peft_model(model, peft_config(LoraSection(method=method), total_steps=10)).eval()
    ids = torch.tensor([[3, 9, 27, 81, 243 % len(tokenizer)]])
    generator = torch.Generator().manual_seed(0)

    def perturb() -> None:
        with torch.no_grad():
            for parameter in peft_model.parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)

    perturb()
    kept = {key: tensor.clone() for key, tensor in get_peft_model_state_dict(peft_model).items()}
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
    perturb()
    set_peft_model_state_dict(peft_model, kept)
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=ids).logits, expected, atol=1e-5), method
