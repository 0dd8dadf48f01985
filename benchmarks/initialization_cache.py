"""What the initialization cache saves: computing pca / pissa / umap for a stack of Llama-sized-ish layers
versus reading the same factors back from the safetensors cache, measured side by side in one run.

    python benchmarks/initialization_cache.py [--size 1024] [--layers 4] [--rank 16] [--repeats 3]

Prints medians and the compute / cached ratio (this machine is noisy: compare ratios). The cached path
includes the weight digest that guards against stale entries.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from tabulate import tabulate


def build(size: int, layers: int, rank: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    blocks = torch.nn.Sequential(*[torch.nn.Linear(size, size, bias=False) for _ in range(layers)])
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=[str(i) for i in range(layers)])
    return get_peft_model(blocks, config)


def main() -> None:
    from sft.model.initialization.apply import apply_initializer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = build(args.size, args.layers, args.rank)
    rows = []
    for method in ("pca", "pissa", "umap"):
        computed, cached = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                first = apply_initializer(model, method, cache_folder=folder)
                second = apply_initializer(model, method, cache_folder=folder)
                assert first["computed"] == args.layers and second["cache_hits"] == args.layers
                computed.append(first["seconds"])
                cached.append(second["seconds"])
        compute, read = statistics.median(computed), statistics.median(cached)
        rows.append([method, f"{compute:.3f}", f"{read:.3f}", f"{compute / read:.1f}x"])
    print(f"{args.layers} layers of {args.size}x{args.size}, rank {args.rank}, median of {args.repeats}")
    print(tabulate(rows, headers=["method", "compute s", "from cache s", "ratio"], tablefmt="github"))


if __name__ == "__main__":
    main()
