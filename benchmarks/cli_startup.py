"""How long `python -m sft.cli --help` takes, beside a bare interpreter and the heavy imports it avoids.

    python benchmarks/cli_startup.py [--repeats 5]

Prints medians and ratios to a bare `python -c pass`, all measured side by side in one run (this
machine is noisy; compare ratios, not absolute times). Target: --help under 1.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from tabulate import tabulate

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "sft.cli --help": [sys.executable, "-m", "sft.cli", "--help"],
    "sft.cli validate --help": [sys.executable, "-m", "sft.cli", "validate", "--help"],
    "import torch": [sys.executable, "-c", "import torch"],
    "import transformers model classes": [sys.executable, "-c", "from transformers import AutoModelForCausalLM"],
    "import trl SFTTrainer": [sys.executable, "-c", "from trl import SFTTrainer"],
}


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    for command in COMMANDS.values():  # warm the file cache and bytecode
        seconds(command)
    timings = {name: [] for name in COMMANDS}
    for _ in range(repeats):  # interleaved, so machine noise hits every command alike
        for name, command in COMMANDS.items():
            timings[name].append(seconds(command))
    baseline = statistics.median(timings["python -c pass"])
    rows = [[name, statistics.median(values), statistics.median(values) / baseline] for name, values in timings.items()]
    print(tabulate(rows, headers=["command", "median s", "x bare python"], floatfmt=".2f", tablefmt="github"))


if __name__ == "__main__":
    main()
