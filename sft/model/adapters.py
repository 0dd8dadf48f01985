"""The PEFT config object of the experiment's adapter method (`lora.method`, `sft.config.adapters`)."""

from __future__ import annotations

from typing import Any

from sft.config import LoraSection
from sft.config.adapters import ADAPTERS, adapter_traits


def peft_config(lora: LoraSection, task_type: str | None = None, total_steps: int | None = None) -> Any:
    """The method's PEFT config built from the `lora` section; `task_type` overrides the section's (head
    mode), `total_steps` fills the schedule of a method that has one (AdaLoRA's `total_step`)."""
    kwargs = lora.peft_kwargs()
    if task_type is not None:
        kwargs["task_type"] = task_type
    if adapter_traits(lora.method).total_steps and kwargs.get("total_step") is None:
        kwargs["total_step"] = max(1, total_steps or 1)
    return ADAPTERS.get(lora.method)(**kwargs)


def uses_virtual_tokens(model: Any) -> bool:
    """Whether `model` is a PEFT model of a prompt-learning method (virtual tokens before every input)."""
    active = getattr(model, "active_peft_config", None)
    return bool(getattr(active, "is_prompt_learning", False))
