"""Time `validate` on the shipped grids: main's checkout against this one, side by side in one run.

    python benchmarks/validation.py ../sft-main .     # OLD NEW checkouts; prints per grid wall seconds and ratio

Each runs from its own root (`python -m` puts the working directory first on sys.path, so it decides
which sft runs; the grids' relative paths must resolve alike: `../shared/data`, which the grids that take
their data from the `data` external variable are given, and for quickstart a `build/` link to OLD's),
alternating old and new so machine load hits both alike. Printed per grid:
the median wall seconds and CPU seconds (user + system of the child: on a shared machine the fairer
measure) of `--repeats` runs, and the exit codes (a hub model missing from the local cache is a
problem the new validation names, so exit 2 there is expected offline).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The local copies of the data the grids taking a `data` external variable read (an older checkout's grid
# ignores the variable and reads the same folder itself).
LOCAL_DATA = {
    "tweet_emotion.jsonnet": "../shared/data/tweeteval/emotion",
    "tweet_emotion_early_stopping.jsonnet": "../shared/data/tweeteval/emotion",
    "goemotions_ekman.jsonnet": "../shared/data/goemotions/ekman",
    "goemotions_ekman_minilm_head.jsonnet": "../shared/data/goemotions/ekman",
}


def ext_vars(grid: Path) -> list[str]:
    header = "\n".join(line for line in grid.read_text().splitlines() if line.lstrip().startswith("//"))
    pairs = [pair for pair in re.findall(r"--ext-var\s+([A-Za-z_]\w*=\S+)", header) if not pair.startswith("data=")]
    if grid.name in LOCAL_DATA:
        pairs.append(f"data={LOCAL_DATA[grid.name]}")
    if grid.name == "nli.jsonnet" and not pairs:
        pairs = ["model=HuggingFaceTB/SmolLM2-135M-Instruct"]
    return [part for pair in pairs for part in ("--ext-var", pair)]


def timed(checkout: Path, grid: Path, cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of `validate grid` with `checkout`'s sft."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sft.cli", "validate", str(grid), *ext_vars(grid)],
        cwd=cwd, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    grids = sorted((args.new / "etc/configs/jsonnet").glob("*.jsonnet"))
    old_root, new_root = args.old.resolve(), args.new.resolve()
    print(f"{'grid':26} {'wall old':>9} {'new':>7} {'ratio':>6} {'CPU old':>8} {'new':>7} {'ratio':>6}  exit old/new")
    for grid in grids:
        old, new, codes = [], [], set()
        for _ in range(args.repeats):
            *measured, old_code = timed(old_root, old_root / "etc/configs/jsonnet" / grid.name, old_root)
            old.append(measured)
            *measured, new_code = timed(new_root, grid.resolve(), new_root)
            new.append(measured)
            codes.add((old_code, new_code))
        (old_wall, old_cpu), (new_wall, new_cpu) = (
            [statistics.median(values) for values in zip(*runs)] for runs in (old, new)
        )
        print(
            f"{grid.name:26} {old_wall:9.1f} {new_wall:7.1f} {new_wall / old_wall:6.2f} {old_cpu:8.1f} {new_cpu:7.1f} "
            f"{new_cpu / old_cpu:6.2f}  {sorted(codes)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
