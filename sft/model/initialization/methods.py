"""The built-in initializers. Each reads W (out_features x in_features) of the base layer, dequantized when
the layer is quantized, and returns the factors of the effective initial update B A (see `registry`).

- `pca`: A = V_r^T, the top-r right singular vectors of W (the input directions W amplifies most);
  B = 0, so the adapter starts as a no-op and training only moves B at first.
- `pissa`: the simplified PiSSA of the reference tool (Meng et al. 2024, arXiv:2404.02948):
  A = sqrt(S_r) V_r^T, B = U_r sqrt(S_r), so B A = W_r, the rank-r principal part of W. Unlike the paper
  (and PEFT's `pissa_residual`), the base weight is NOT replaced by the residual W - W_r: the adapted
  layer starts at W + W_r, so the model's initial outputs change.
- `umap`: A = the UMAP embedding (McInnes et al. 2018, arXiv:1802.03426) of the input dimensions of W
  (the rows of W^T, each a point in R^out) into r components, transposed to r x in; each row is centred
  and scaled to unit norm, like pca's orthonormal rows. B = 0.

Singular vectors are sign-fixed (largest entry of each right vector positive) so results are reproducible.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from sft.model.initialization.dequantize import dequantize_weight


def top_singular(weight: Any, rank: int, niter: int | None = None) -> tuple[Any, Any, Any]:
    """(U_r, S_r, V_r) of W, float32, with deterministic signs. `niter` switches to a randomized SVD
    (torch.svd_lowrank with that many subspace iterations) for very large layers."""
    out_features, in_features = weight.shape
    if rank > min(out_features, in_features):
        raise ValueError(
            f"rank {rank} exceeds the smaller dimension of a {out_features}x{in_features} weight; lower lora.r"
        )
    if niter is None:
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        u, s, v = u[:, :rank], s[:rank], vh[:rank].t()
    else:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # svd_lowrank draws a random test matrix: fix it so results are reproducible
        # a few extra columns (oversampling) make the top-r vectors far more accurate
        u, s, v = torch.svd_lowrank(weight, q=min(rank + 8, out_features, in_features), niter=niter)
        u, s, v = u[:, :rank], s[:rank], v[:, :rank]
        torch.random.set_rng_state(generator_state)
    # u s v^T is unchanged when a column of u and the same column of v both flip sign
    pivot = v.abs().argmax(dim=0)
    signs = torch.sign(v[pivot, torch.arange(rank)])
    signs[signs == 0] = 1
    return u * signs, s, v * signs


def pca(base_layer: Any, rank: int, dtype: Any = None, niter: int | None = None) -> dict[str, Any]:
    """A = top-r right singular vectors of W (rows of V_r^T), B = 0."""
    weight = dequantize_weight(base_layer)
    _, _, v = top_singular(weight, rank, niter)
    lora_a = v.t().contiguous()
    lora_b = torch.zeros(weight.shape[0], rank, device=weight.device)
    return {"lora_A": lora_a.to(dtype or torch.float32), "lora_B": lora_b.to(dtype or torch.float32)}


def pissa(base_layer: Any, rank: int, dtype: Any = None, niter: int | None = None) -> dict[str, Any]:
    """A = sqrt(S_r) V_r^T, B = U_r sqrt(S_r): B A = W_r; the base weight stays W."""
    weight = dequantize_weight(base_layer)
    u, s, v = top_singular(weight, rank, niter)
    root = s.sqrt()
    lora_a = (root.unsqueeze(1) * v.t()).contiguous()
    lora_b = (u * root.unsqueeze(0)).contiguous()
    return {"lora_A": lora_a.to(dtype or torch.float32), "lora_B": lora_b.to(dtype or torch.float32)}


def umap(
    base_layer: Any,
    rank: int,
    dtype: Any = None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    random_state: int = 0,
) -> dict[str, Any]:
    """A = UMAP embedding of W's input dimensions (rows of W^T) into r components, transposed; B = 0.

    `random_state` makes UMAP deterministic (and single-threaded)."""
    from umap import UMAP

    weight = dequantize_weight(base_layer)
    out_features, in_features = weight.shape
    if rank >= in_features - 1:
        raise ValueError(f"umap needs lora.r < in_features - 1; got r={rank} for {in_features} input features")
    points = weight.t().cpu().numpy()
    reducer = UMAP(
        n_components=rank,
        n_neighbors=min(n_neighbors, in_features - 1),
        min_dist=min_dist,
        metric=metric,
        random_state=random_state,
        # spectral initialization needs more points than components + 1
        init="spectral" if in_features > rank + 2 else "random",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # seeded UMAP is single-threaded
        embedding = reducer.fit_transform(points)  # (in_features, rank)
    lora_a = torch.from_numpy(embedding).float().t().to(weight.device)
    lora_a = lora_a - lora_a.mean(dim=1, keepdim=True)
    lora_a = lora_a / lora_a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    lora_b = torch.zeros(out_features, rank, device=weight.device)
    return {"lora_A": lora_a.contiguous().to(dtype or torch.float32), "lora_B": lora_b.to(dtype or torch.float32)}
