"""Per-experiment process overhead of the grid runner's executors, and the parallel efficiency of --jobs 2.

Overhead: time from asking an executor to start an experiment to the first line of experiment code
with the libraries it uses (torch, transformers, trl, peft, datasets) imported, i.e. what a fresh
process costs before the experiment can do anything. Measured for the plain subprocess and for the
fork server (once it is up; its own start-up, paid once per grid, is shown separately). A throwaway
`sitecustomize` makes `run_experiment` write that moment to a file and return.

Efficiency: a grid of small zero-shot experiments on the tiny offline model, run with --jobs 1 and
--jobs 2 (fork server); makespan(jobs 1) / (2 x makespan(jobs 2)), makespan measured from the first
experiment process to the last result (so the fork server's start-up, equal in both, is left out).

    PYTHONPATH=. python benchmarks/runner.py [--repeats 5] [--experiments 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
HOOK = """
import os, time
if os.environ.get("SFT_BENCH_ENTRY"):
    import sft.experiment.run
    def run_experiment(config, run):
        import torch, transformers, trl, peft, datasets  # what the experiment needs: no-ops once imported
        with open(os.environ["SFT_BENCH_ENTRY"] + f".{run.seed}", "w") as handle:
            handle.write(repr(time.time()))
        return {}
    sft.experiment.run.run_experiment = run_experiment
"""


def assets(root: Path) -> tuple[Path, Path]:
    from sft.synthetic import save_tiny_model, sentiment_examples, write_splits

    model = save_tiny_model(root / "tiny-qwen2", architecture="qwen2", style="chatml", seed=2)
    splits = {"train": sentiment_examples(60, seed=1), "test": sentiment_examples(24, seed=3)}
    data = write_splits(root / "data", splits)
    return model, data


def small_config(data: Path, model: Path, index: int):
    from sft.config import parse_config

    return parse_config(
        {
            "dataset": {"path": str(data), "max_n_test": 24},
            "model": {"name": str(model)},
            "prompting": {"instruction": f"Classify the review ({index}).", "input_columns": ["text"],
                          "output_column": "label"},
        }
    )  # fmt: skip


def overheads(executor_name: str, config, root: Path, repeats: int) -> tuple[list[float], float | None]:
    """Start-to-first-line seconds of `repeats` experiments, and the executor's own start-up (fork server)."""
    from sft.results.layout import Run, write_config
    from sft.runner.executors import Job, get_executor

    results = root / f"overhead-{executor_name}"
    entry = root / f"entry-{executor_name}"
    os.environ["SFT_BENCH_ENTRY"] = str(entry)
    began = time.time()
    executor = get_executor(executor_name, results_path=results)
    setup = None
    seconds = []
    try:
        for seed in range(repeats + 1):  # seed 0 warms up (and, for the fork server, waits for its imports)
            run = Run("bench", seed, results)
            run.folder.mkdir(parents=True, exist_ok=True)
            job = Job(run, config, write_config(config, run), run.folder / "run.log", None)
            started = time.time()
            handle = executor.start(job)
            while (code := handle.poll()) is None:
                time.sleep(0.002)
            assert code == 0, (run.folder / "run.log").read_text()[-2000:]
            first_line = float(Path(f"{entry}.{seed}").read_text())
            if seed == 0:
                setup = first_line - began if executor_name == "forkserver" else None
            else:
                seconds.append(first_line - started)
    finally:
        executor.close()
        del os.environ["SFT_BENCH_ENTRY"]
    return seconds, setup


def makespan(results: Path) -> float:
    statuses = [json.loads(path.read_text()) for path in results.glob("*/seed-*/status.json")]
    assert all(status["state"] == "done" for status in statuses), statuses
    launched = min(datetime.fromisoformat(status["launched_at"]) for status in statuses)
    finished = max(datetime.fromisoformat(status["finished_at"]) for status in statuses)
    return (finished - launched).total_seconds()


def grid_makespan(configs: dict, root: Path, jobs: int, tag: str) -> float:
    from sft.runner.scheduler import Options, run_experiments

    results = root / f"grid-{tag}"
    code = run_experiments(configs, results, Options(jobs=jobs), Console(file=io.StringIO()))
    assert code == 0
    return makespan(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument("--grid-repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="sft-bench-runner-") as tmp:
        root = Path(tmp)
        (root / "hook").mkdir()
        (root / "hook" / "sitecustomize.py").write_text(HOOK)
        os.environ["PYTHONPATH"] = os.pathsep.join([str(root / "hook"), str(REPO), os.environ.get("PYTHONPATH", "")])
        model, data = assets(root)
        config = small_config(data, model, 0)

        rows = []
        measured = {}
        for name in ("subprocess", "forkserver"):
            seconds, setup = overheads(name, config, root, args.repeats)
            measured[name] = statistics.median(seconds)
            rows.append([name, f"{measured[name]:.3f}", f"{min(seconds):.3f}", f"{max(seconds):.3f}",
                         f"{setup:.1f} (once per grid)" if setup is not None else "-"])  # fmt: skip
        print(f"Per-experiment process overhead, launch -> first line of experiment code ({args.repeats} runs)")
        print(tabulate(rows, headers=["executor", "median s", "min s", "max s", "server start s"]))
        print(f"subprocess / forkserver: {measured['subprocess'] / measured['forkserver']:.0f}x; "
              f"target <= 1.5 s: {'met' if measured['forkserver'] <= 1.5 else 'NOT met'}\n")  # fmt: skip

        configs = {f"exp{index}": small_config(data, model, index) for index in range(args.experiments)}
        serial, parallel = [], []
        for repeat in range(args.grid_repeats):  # alternate, so load changes hit both alike
            serial.append(grid_makespan(configs, root, 1, f"j1-{repeat}"))
            parallel.append(grid_makespan(configs, root, 2, f"j2-{repeat}"))
        one, two = statistics.median(serial), statistics.median(parallel)
        print(f"Parallel efficiency of --jobs 2 ({args.experiments} zero-shot experiments, fork server, "
              f"median of {args.grid_repeats}, {os.cpu_count()} CPUs shared)")  # fmt: skip
        print(tabulate([[f"{one:.1f}", f"{two:.1f}", f"{one / two:.2f}", f"{one / (2 * two):.2f}"]],
                       headers=["makespan jobs 1 s", "makespan jobs 2 s", "speed-up", "efficiency"]))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
