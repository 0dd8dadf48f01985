"""Per-experiment process overhead of the grid runner's executors, and the parallel efficiency of --jobs 2.

Overhead: time from asking an executor to start an experiment to the first line of experiment code
with the libraries it uses (torch, transformers, trl, peft, datasets) imported, i.e. what a fresh
process costs before the experiment can do anything. Measured for the plain subprocess and for the
fork server (once it is up; its own start-up, paid once per grid, is shown separately). A throwaway
`sitecustomize` makes `run_experiment` write that moment to a file and return.

Efficiency: grids of small zero-shot experiments and of small LoRA trainings (a 2-layer model of
width 192, 12 steps) run with --jobs 1 and --jobs 2 (fork server); makespan(jobs 1) / (2 x makespan(jobs 2)),
makespan measured from the first experiment process to the last result (so the fork server's
start-up, equal in both, is left out). `--jobs 2` runs twice: with the runner's CPU shares (each slot
pinned to its cores, one thread per core) and unpinned with as many threads per experiment as the
machine has cores (what torch does by default, and what the runner did before).

Slurm: on the cluster SLURM_CONF names, or else a one-node Slurm started here (as root, with Debian's
slurm-wlm and munge; tests/helpers/slurm.py): the runner's overhead per job (the submit call,
plus batch-script start to the first line of experiment code; Slurm's own scheduling wait shown
apart) and the makespan of 8 small experiments, from the first sbatch, next to the fork server with
--jobs 2.

    PYTHONPATH=. python benchmarks/runner.py [--repeats 5] [--experiments 4] [--sections training,slurm]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
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
    from sft.runner.executors import ExecutorContext, Job, get_executor

    results = root / f"overhead-{executor_name}"
    entry = root / f"entry-{executor_name}"
    os.environ["SFT_BENCH_ENTRY"] = str(entry)
    began = time.time()
    executor = get_executor(executor_name, ExecutorContext(results))
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


def makespan(results: Path, since: float | None = None) -> float:
    """First experiment process (or `since`, e.g. the first submission) to the last result."""
    from sft.results.layout import run_folders
    from sft.results.states import StatusRecord

    statuses = [StatusRecord.read(folder / StatusRecord.FILE) for folder in run_folders(results)]
    assert all(status.state == "done" and status.launched_at and status.finished_at for status in statuses), statuses
    launched = min(datetime.fromisoformat(str(status.launched_at)).timestamp() for status in statuses)
    finished = max(datetime.fromisoformat(str(status.finished_at)).timestamp() for status in statuses)
    return finished - (since if since is not None else launched)


def grid_makespan(configs: dict, root: Path, tag: str, **options) -> float:
    """Makespan of the grid; for Slurm from the first submission (its queueing is part of the cost)."""
    from sft.results.layout import run_folders
    from sft.runner.options import Options
    from sft.runner.scheduler import run_experiments

    results = root / f"grid-{tag}"
    began = time.time()
    code = run_experiments(configs, results, Options(**options), Console(file=io.StringIO()))
    assert code == 0, [(folder / "run.log").read_text()[-1500:] for folder in run_folders(results)]
    return makespan(results, began if options.get("executor") == "slurm" else None)


def training_config(data: Path, model: Path, index: int):
    """A small LoRA training (8 examples per label, batch 4, 2 epochs: 12 steps) plus its evaluation."""
    from sft.config import parse_config

    return parse_config(
        {
            "dataset": {"path": str(data), "max_n_test": 12, "shots": 8},
            "model": {"name": str(model)},
            "prompting": {"instruction": f"Classify the review ({index}).", "input_columns": ["text"],
                          "output_column": "label"},
            "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear"},
            "training": {"trainer_args": {"num_train_epochs": 2, "per_device_train_batch_size": 4,
                                          "learning_rate": 1e-3, "save_strategy": "no"}},
        }
    )  # fmt: skip


def efficiency(title: str, configs: dict, root: Path, repeats: int, variants: dict[str, tuple[int, dict]]) -> None:
    """Makespan of each (jobs, extra environment) variant, alternated so load changes hit all alike;
    efficiency of each --jobs 2 variant against each --jobs 1 one."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(repeats):
        for index, (name, (jobs, environment)) in enumerate(variants.items()):
            os.environ.update(environment)
            try:
                times[name].append(grid_makespan(configs, root, f"{title}-{index}-{repeat}", jobs=jobs))
            finally:
                for key in environment:  # main() cleared them all before
                    os.environ.pop(key, None)
    medians = {name: statistics.median(values) for name, values in times.items()}
    serial = [name for name, (jobs, _) in variants.items() if jobs == 1]
    rows = []
    for name, (jobs, _) in variants.items():
        ratios = [f"{medians[base] / (2 * medians[name]):.2f}" if jobs == 2 else "-" for base in serial]
        rows.append([name, f"{medians[name]:.1f}", *ratios])
    print(f"Parallel efficiency of --jobs 2, {len(configs)} {title} experiments (fork server, median of "
          f"{repeats}, {os.cpu_count()} CPUs)")  # fmt: skip
    print(tabulate(rows, headers=["run", "makespan s", *(f"efficiency vs {base}" for base in serial)]) + "\n")


def slurm_section(configs: dict, config, root: Path, repeats: int) -> None:
    """On a reachable Slurm (SLURM_CONF, else a one-node Slurm started here as root): the runner's own
    overhead per job and the makespan of the grid next to the fork server's with --jobs 2."""
    from sft.runner.slurm_executor import SlurmOptions

    cluster = None
    if subprocess.run(["sinfo"], capture_output=True).returncode != 0:
        sys.path.insert(0, str(REPO / "tests"))
        from helpers.slurm import SlurmUnavailable, start_cluster

        try:
            cluster = start_cluster(root / "slurm")
        except SlurmUnavailable as error:
            print(f"Slurm: skipped ({error})")
            return
        os.environ.update(cluster.env)
    try:
        submit, wait, in_job = slurm_overheads(config, root, repeats)
        ours = statistics.median([a + b for a, b in zip(submit, in_job)])
        plain, _ = overheads("subprocess", config, root, repeats)  # side by side: a fresh local process
        print(f"Slurm: runner overhead per job ({repeats} jobs, one at a time)")
        row = [statistics.median(submit), statistics.median(wait), statistics.median(in_job), ours]
        headers = ["submit s (sbatch via submitit)", "Slurm scheduling s", "job start -> first line s"]
        headers += ["runner overhead s", "subprocess executor s"]
        print(tabulate([[f"{value:.3f}" for value in [*row, statistics.median(plain)]]], headers=headers))
        slurm, local = [], []
        for repeat in range(max(1, repeats // 3)):
            options = {"executor": "slurm", "jobs": len(configs), "executor_options": SlurmOptions()}
            slurm.append(grid_makespan(configs, root, f"slurm-{repeat}", **options))
            local.append(grid_makespan(configs, root, f"fork-{repeat}", jobs=2))
        one, two = statistics.median(local), statistics.median(slurm)
        print(f"\nMakespan of {len(configs)} small experiments on {os.cpu_count()} CPUs")
        print(
            tabulate(
                [[f"{one:.1f}", f"{two:.1f}", f"{two / one:.2f}"]],
                headers=["forkserver --jobs 2 s", "slurm s (from first sbatch)", "slurm / forkserver"],
            )
        )
    finally:
        if cluster is not None:
            cluster.stop()


def slurm_overheads(config, root: Path, repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Per job: the submit call, Slurm's wait until the batch script starts, and batch start -> first line."""
    from sft.results.layout import Run, write_config
    from sft.runner.executors import ExecutorContext, Job, get_executor
    from sft.runner.slurm_executor import SlurmOptions

    results = root / "overhead-slurm"
    entry = root / "entry-slurm"
    stamp = f"date +%s.%N > {root}/slurm-start.$SLURM_JOB_ID"
    os.environ["SFT_BENCH_ENTRY"] = str(entry)
    executor = get_executor("slurm", ExecutorContext(results), SlurmOptions(setup=[stamp]))
    submit, wait, in_job = [], [], []
    try:
        for seed in range(repeats):
            run = Run("bench", seed, results)
            run.folder.mkdir(parents=True, exist_ok=True)
            job = Job(run, config, write_config(config, run), run.folder / "run.log", None)
            began = time.time()
            handle = executor.start(job)
            executor.submit_pending()  # what the runner's first look at the job does
            submitted = time.time()
            while (code := handle.poll()) is None:
                time.sleep(0.05)
            assert code == 0, (run.folder / "run.log").read_text()[-2000:]
            started = float((root / f"slurm-start.{handle.job_id}").read_text())
            first_line = float(Path(f"{entry}.{seed}").read_text())
            submit.append(submitted - began)
            wait.append(started - submitted)
            in_job.append(first_line - started)
    finally:
        executor.close()
        del os.environ["SFT_BENCH_ENTRY"]
    return submit, wait, in_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument("--grid-repeats", type=int, default=2)
    parser.add_argument("--sections", default="overhead,zero-shot,training,slurm",
                        help="any of overhead, zero-shot, training, slurm")  # fmt: skip
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.pop("OMP_NUM_THREADS", None)  # the runner's own CPU shares, unless a variant sets it
    with tempfile.TemporaryDirectory(prefix="sft-bench-runner-") as tmp:
        root = Path(tmp)
        (root / "hook").mkdir()
        (root / "hook" / "sitecustomize.py").write_text(HOOK)
        os.environ["PYTHONPATH"] = os.pathsep.join([str(root / "hook"), str(REPO), os.environ.get("PYTHONPATH", "")])
        model, data = assets(root)
        config = small_config(data, model, 0)

        if "overhead" in sections:
            overhead_section(config, root, args.repeats)
        cores = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
        unpinned = {
            "jobs 1": (1, {}),  # the runner's default: the one slot has every core
            "jobs 1, one thread": (1, {"OMP_NUM_THREADS": "1"}),  # the same work per experiment as a --jobs 2 slot
            "jobs 2": (2, {}),
            f"jobs 2, unpinned ({cores} threads each, as before)": (2, {"OMP_NUM_THREADS": cores}),
        }
        if "zero-shot" in sections:
            configs = {f"exp{index}": small_config(data, model, index) for index in range(args.experiments)}
            efficiency("zero-shot", configs, root, args.grid_repeats, unpinned)
        if "training" in sections:
            from sft.synthetic import save_tiny_model

            bigger = save_tiny_model(root / "train-model", "qwen2", "chatml", seed=4, hidden_size=192, layers=2)
            configs = {f"train{index}": training_config(data, bigger, index) for index in range(args.experiments)}
            efficiency("training", configs, root, args.grid_repeats, unpinned)
        if "slurm" in sections:
            configs = {f"exp{index}": small_config(data, model, index) for index in range(8)}
            slurm_section(configs, config, root, args.repeats)


def overhead_section(config, root: Path, repeats: int) -> None:
    rows = []
    measured = {}
    for name in ("subprocess", "forkserver"):
        seconds, setup = overheads(name, config, root, repeats)
        measured[name] = statistics.median(seconds)
        rows.append([name, f"{measured[name]:.3f}", f"{min(seconds):.3f}", f"{max(seconds):.3f}",
                     f"{setup:.1f} (once per grid)" if setup is not None else "-"])  # fmt: skip
    print(f"Per-experiment process overhead, launch -> first line of experiment code ({repeats} runs)")
    print(tabulate(rows, headers=["executor", "median s", "min s", "max s", "server start s"]))
    print(f"subprocess / forkserver: {measured['subprocess'] / measured['forkserver']:.0f}x; "
          f"target <= 1.5 s: {'met' if measured['forkserver'] <= 1.5 else 'NOT met'}\n")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
