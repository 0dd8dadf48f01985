"""Time `validate` on the shipped grids: main's checkout against this one, side by side in one run.

    python benchmarks/validation.py /work/main .      # OLD NEW; prints per grid wall seconds and ratio

Grids are run from the repository root (their data paths are relative to it), alternating old and new
so machine load hits both alike; the median of `--repeats` runs is printed with the exit codes (a hub
model missing from the local cache is a problem the new validation names, so exit 2 there is expected
offline).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path


def ext_vars(grid: Path) -> list[str]:
    header = "\n".join(line for line in grid.read_text().splitlines() if line.lstrip().startswith("//"))
    pairs = re.findall(r"--ext-var\s+([A-Za-z_]\w*=\S+)", header)
    if grid.name == "nli.jsonnet" and not pairs:
        pairs = ["model=HuggingFaceTB/SmolLM2-135M-Instruct"]
    return [part for pair in pairs for part in ("--ext-var", pair)]


def timed(checkout: Path, grid: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sft.cli", "validate", str(grid), *ext_vars(grid)],
        cwd=checkout, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return time.perf_counter() - started, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    grids = sorted((args.new / "etc/configs/jsonnet").glob("*.jsonnet"))
    print(f"{'grid':28} {'old s':>8} {'new s':>8} {'new/old':>8}  exit old/new")
    for grid in grids:
        old, new, codes = [], [], set()
        for _ in range(args.repeats):
            seconds, old_code = timed(args.old.resolve(), args.old.resolve() / "etc/configs/jsonnet" / grid.name)
            old.append(seconds)
            seconds, new_code = timed(args.new.resolve(), grid.resolve())
            new.append(seconds)
            codes.add((old_code, new_code))
        old_s, new_s = statistics.median(old), statistics.median(new)
        print(f"{grid.name:28} {old_s:8.1f} {new_s:8.1f} {new_s / old_s:8.2f}  {sorted(codes)}", flush=True)


if __name__ == "__main__":
    main()
