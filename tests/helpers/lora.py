"""LoRA on the tiny models, bitsandbytes settings, and an SVD independent of the code under test: what
the initialization, quantization and placement tests share."""

from __future__ import annotations

import numpy as np
import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

BNB = {
    "nf4": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
    "fp4": {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4"},
    "int8": {"load_in_8bit": True},
}


def reference_svd(weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U, S, V^T by numpy in float64: an implementation independent of the one under test."""
    return np.linalg.svd(weight.detach().double().numpy(), full_matrices=False)


def projector(rows: np.ndarray) -> np.ndarray:
    """Orthogonal projector onto the span of `rows`."""
    q, _ = np.linalg.qr(rows.T)
    return q @ q.T


def distance(p: np.ndarray, q: np.ndarray) -> float:
    """Spectral norm of the difference of two projectors: 0 for the same subspace, 1 for orthogonal ones."""
    return float(np.linalg.norm(p - q, ord=2))


def rank_r_part(weight: torch.Tensor, rank: int) -> np.ndarray:
    u, s, vh = reference_svd(weight)
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


def with_lora(model, r: int = 4, alpha: float = 16, targets=TARGETS):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), task_type="CAUSAL_LM")
    return get_peft_model(model, config).eval()


INPUT_IDS = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=INPUT_IDS).logits
