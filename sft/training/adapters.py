"""What an adapter method needs from training beyond LoRA's: the planned number of optimizer steps (AdaLoRA
schedules its rank budget over them) and the per-step call that reallocates AdaLoRA's ranks."""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from sft.config import LoraSection
from sft.config.adapters import adapter_traits


def planned_steps(arguments: Any, examples: int) -> int:
    """The optimizer steps a trainer with `arguments` takes over `examples` (one process): `max_steps`
    when set, else the epochs' batches over the gradient accumulation."""
    if arguments.max_steps and arguments.max_steps > 0:
        return int(arguments.max_steps)
    batches = math.ceil(examples / max(1, arguments.per_device_train_batch_size))
    per_epoch = max(1, batches // max(1, arguments.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * arguments.num_train_epochs))


class RankAllocation(TrainerCallback):
    """AdaLoRA: after each optimizer step, while the gradients still exist, let PEFT update its importance
    scores and mask the least important ranks (`update_and_allocate`)."""

    def on_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None:
            model.base_model.update_and_allocate(state.global_step)


def adapter_callbacks(lora: LoraSection) -> list[Any]:
    """The trainer callbacks the method needs (AdaLoRA's rank allocation; none for the others)."""
    return [RankAllocation()] if adapter_traits(lora.method).total_steps else []
