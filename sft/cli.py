"""Command line: `python -m sft.cli COMMAND`. Each command parses its arguments and calls one library
function. Nothing heavy (torch, transformers, trl, peft, datasets) is imported here, so `--help` is
instant; the web server's framework is imported by `serve` alone."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from sft.config import DEFAULT_SEED, ConfigError, seed_problem
from sft.config.grid import parse_ext_vars
from sft.results.files import DISK_FULL_EXIT, disk_full, disk_full_reason
from sft.results.layout import Run, check_name, results_folder_problems
from sft.results.logs import RUNNER_LOG_ENV, setup_logging
from sft.runner.interrupts import exit_130_on_interrupt

# Each command imports the library function it calls inside its body: `--help`, and a command refused
# for its arguments, never pay for the report, the runner, the experiment code or the serving stack.

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Few-shot fine-tuning and evaluation of decoder-only LLMs, from one config or a JSONNET grid.",
)

ConfigArg = Annotated[Path, typer.Argument(help="A JSON config (one experiment) or a JSONNET file with one.")]
GridArg = Annotated[
    Path, typer.Argument(help="A JSONNET grid ({'configs': {name: config}} or a list) or a JSON config.")
]
ResultsOpt = Annotated[Path, typer.Option("--results-path", help="Folder of the results.")]
SeedOpt = Annotated[int, typer.Option("--random-seed", help="Seed for shots, in-context examples and training.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Experiment name (default: the config's file name).")]
InputOpt = Annotated[Path | None, typer.Option("--input", help="New inputs (.csv, .jsonl, .parquet) to predict.")]
OutputOpt = Annotated[Path | None, typer.Option("--output", help="Where --input's predictions go (same formats).")]
ExtVarOpt = Annotated[
    list[str] | None, typer.Option("--ext-var", help="JSONNET external variable key=value; repeatable.")
]
DataCheckOpt = Annotated[bool, typer.Option("--check-data/--no-check-data", help="Also load and check each dataset.")]
ModelCheckOpt = Annotated[
    bool,
    typer.Option(
        "--check-models/--no-check-models",
        help="Also check each model without loading weights: files, config, tokenizer, device, LoRA targets.",
    ),
]
ShareOpt = Annotated[
    bool,
    typer.Option(
        "--share-training/--no-share-training",
        help="Train once per training key and seed into RESULTS/_adapters and reuse it (default), or train "
        "this experiment's own adapter.",
    ),
]


def _fail(error: ConfigError) -> NoReturn:
    typer.echo(str(error), err=True)
    raise typer.Exit(2)


def _single(
    path: Path, command: str, name: str | None, ext_vars: list[str] | None, results: Path, seed: int, share: bool
):
    """(config, run) for a single-experiment command; config errors exit with status 2."""
    from sft.experiment.checks import load_one
    from sft.experiment.run import check_before_running

    problems = [problem for problem in [seed_problem(seed, "--random-seed")] if problem]
    problems += results_folder_problems(results)
    try:
        file_name, config = load_one(path, command, parse_ext_vars(ext_vars))
    except ConfigError as error:
        _fail(ConfigError([*problems, *error.messages]))
    problem = check_name(name or file_name)
    if problem:
        problems.append(f"--name: {problem}")
    if problems:
        _fail(ConfigError(problems))
    run = Run(name or file_name, seed, results, share)

    _guard(check_before_running, config, run, command)  # before the run folder is created or touched
    return config, run


def _guard(function, *args, **kwargs):
    """Call a library function; a ConfigError (bad config or data) becomes a clear message and exit 2."""
    try:
        return function(*args, **kwargs)
    except ConfigError as error:
        _fail(error)


@app.command()
def train(
    config: ConfigArg, results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    name: NameOpt = None, ext_var: ExtVarOpt = None, share_training: ShareOpt = True,
) -> None:  # fmt: skip
    """Train a LoRA adapter on the few-shot training examples; save adapter, tokenizer and config."""
    from sft.experiment.run import train as train_experiment

    experiment, run = _single(config, "train", name, ext_var, results_path, random_seed, share_training)
    typer.echo(f"Adapter saved to {_guard(train_experiment, experiment, run)}")


@app.command()
def predict(
    config: Annotated[Path, typer.Argument(help="A JSON config (one experiment), or an exported folder with --input.")],
    results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    name: NameOpt = None, ext_var: ExtVarOpt = None, share_training: ShareOpt = True,
    input: InputOpt = None, output: OutputOpt = None,
) -> None:  # fmt: skip
    """Predict the test split into predictions.jsonl; or, with --input/--output, a file of new inputs (with an
    exported folder, or a config whose run has finished)."""
    if (input is None) != (output is None):
        _fail(ConfigError(["predict: give --input and --output together (or neither, to predict the test split)"]))
    from sft.experiment.run import predict as predict_experiment
    from sft.serving.api import load_export, load_run
    from sft.serving.files import predict_file

    if input is not None:
        if config.is_dir():
            model = _guard(load_export, config)
        else:
            model = _guard(
                load_run, *_single(config, "predict", name, ext_var, results_path, random_seed, share_training)
            )
        typer.echo(f"Predictions written to {_guard(predict_file, model, input, output)}")
        return

    experiment, run = _single(config, "predict", name, ext_var, results_path, random_seed, share_training)
    typer.echo(f"Predictions written to {_guard(predict_experiment, experiment, run)}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder: RESULTS/<experiment>/seed-<n>.")],
    out: Annotated[Path, typer.Argument(help="The export folder to create.")],
    merge: Annotated[bool, typer.Option("--merge/--no-merge", help="Merge the adapter into the base weights.")] = True,
) -> None:
    """Export a finished run as a self-contained predictor folder (model, tokenizer, sft_export.json)."""
    from sft.serving.export import export_run

    typer.echo(f"Exported to {_guard(export_run, run_dir, out, merge)}")


@app.command()
def serve(
    exported: Annotated[Path, typer.Argument(help="An exported folder (see `export`).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_batch: Annotated[int | None, typer.Option(help="Inputs per model call (default inference.batch_size).")] = None,
    max_inputs: Annotated[int | None, typer.Option(help="Inputs per request (default 256).")] = None,
    max_bytes: Annotated[int | None, typer.Option(help="Bytes per request (default 1000000).")] = None,
) -> None:
    """Serve an exported model over HTTP: POST /predict, GET /health."""
    from sft.serving.payload import limits_of
    from sft.serving.server import serve as serve_export  # FastAPI and uvicorn: for this command only

    _guard(serve_export, exported, host, port, max_batch, limits_of(max_inputs, max_bytes))


@app.command()
def evaluate(
    config: ConfigArg, results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    name: NameOpt = None, ext_var: ExtVarOpt = None, share_training: ShareOpt = True,
) -> None:  # fmt: skip
    """Predict the test split and compute the metrics; write predictions.jsonl and results.json."""
    from sft.experiment.run import evaluate as evaluate_experiment

    experiment, run = _single(config, "evaluate", name, ext_var, results_path, random_seed, share_training)
    _guard(evaluate_experiment, experiment, run)
    typer.echo(f"Results written to {run.folder / 'results.json'}")


@app.command("run-experiment")
def run_experiment(
    config: ConfigArg, results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    name: NameOpt = None, ext_var: ExtVarOpt = None, share_training: ShareOpt = True,
) -> None:  # fmt: skip
    """Train (when shots > 0) and evaluate one experiment in this process."""
    from sft.experiment.run import run_experiment as run_one

    experiment, run = _single(config, "run-experiment", name, ext_var, results_path, random_seed, share_training)
    try:
        _guard(run_one, experiment, run)
    except Exception as error:
        if not disk_full(error):
            raise
        typer.echo(f"{type(error).__name__}: {error}\n{disk_full_reason(run.folder)}", err=True)
        raise typer.Exit(DISK_FULL_EXIT) from None
    typer.echo(f"Results written to {run.folder / 'results.json'}")


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        _fail(ConfigError([f"{option} {text!r}: give comma-separated integers, e.g. 1,2,3"]))


TrackOpt = Annotated[
    str | None,
    typer.Option(
        "--track", help="Log a parent run and one child per run to this tracker (mlflow); see docs/tracking.md."
    ),
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(help="The tracker's URI, e.g. http://host:5000 (default: sqlite:///RESULTS/mlflow.db)."),
]
TrackingExperimentOpt = Annotated[
    str | None, typer.Option(help="The tracker's experiment name (default: the results folder's name).")
]


def _tracking(track: str | None, uri: str | None, experiment: str | None) -> Any:
    """The tracking options of --track (None without it); --tracking-* without --track are refused."""
    from sft.tracking.settings import TrackingOptions

    if track is None:
        if uri is not None or experiment is not None:
            _fail(ConfigError(["--tracking-uri and --tracking-experiment need --track mlflow; add it or drop them"]))
        return None
    options = TrackingOptions(track, uri, experiment)
    if options.problems():
        _fail(ConfigError(options.problems()))
    return options


SLURM_SETUP_HELP = "Shell line run before each job, e.g. 'module load cuda' (repeatable)."
SLURM_ARGS_HELP = "Any other sbatch option as key=value, e.g. constraint=a100 (repeatable)."


@app.command("run-experiments")
def run_experiments(
    grid: GridArg, results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    ext_var: ExtVarOpt = None, check_data: DataCheckOpt = True, check_models: ModelCheckOpt = True,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds; one run per experiment and seed.")] = None,
    gpus: Annotated[str | None, typer.Option(help="GPU ids to use, e.g. 0,1,2,3: one slot per GPU.")] = None,
    jobs: Annotated[int, typer.Option(help="Experiments at once without --gpus (CPU, or Ray tasks in flight).")] = 1,
    executor: Annotated[str, typer.Option(help="forkserver (default), subprocess, ray or slurm.")] = "forkserver",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: a local Ray).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop an experiment after this many seconds.")] = None,
    retries: Annotated[int, typer.Option(help="Run a failed experiment again up to this many times.")] = 0,
    force: Annotated[bool, typer.Option(help="Re-run finished experiments (old results kept aside).")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Print the trainings and evaluations that would run or be skipped; run nothing.")
    ] = False,
    share_training: ShareOpt = True,
    slurm_partition: Annotated[str | None, typer.Option(help="Slurm partition of the jobs.")] = None,
    slurm_account: Annotated[str | None, typer.Option(help="Slurm account to charge.")] = None,
    slurm_qos: Annotated[str | None, typer.Option(help="Slurm quality of service.")] = None,
    slurm_time: Annotated[str | None, typer.Option(help="Slurm time limit per job, e.g. 90 or 4:00:00.")] = None,
    slurm_setup: Annotated[list[str] | None, typer.Option(help=SLURM_SETUP_HELP)] = None,
    slurm_args: Annotated[list[str] | None, typer.Option(help=SLURM_ARGS_HELP)] = None,
    track: TrackOpt = None, tracking_uri: TrackingUriOpt = None, tracking_experiment: TrackingExperimentOpt = None,
) -> None:  # fmt: skip
    """Validate every experiment of a grid, run each in a fresh process (resuming), then aggregate."""
    from sft.runner.executors import ExecutorOptions
    from sft.runner.launch import run_grid_file
    from sft.runner.options import Options, executor_options
    from sft.runner.ray_executor import RayOptions
    from sft.runner.slurm_executor import SlurmOptions

    # each executor's own flags build its own options; those of an executor that does not run are refused
    given: list[ExecutorOptions] = [
        RayOptions(ray_address),
        SlurmOptions(slurm_partition, slurm_account, slurm_qos, slurm_time, slurm_setup or [], slurm_args or []),
    ]
    chosen, problems = executor_options(executor, given)
    options = Options(
        seeds=_int_list(seeds, "--seeds") or [random_seed],
        gpus=[part.strip() for part in gpus.split(",") if part.strip()] if gpus is not None else None,
        jobs=jobs, executor=executor, executor_options=chosen, timeout=timeout, retries=retries,
        force=force, dry_run=dry_run, share_training=share_training,
        tracking=_tracking(track, tracking_uri, tracking_experiment),
    )  # fmt: skip
    ext_vars = _guard(parse_ext_vars, ext_var)
    code = _guard(
        run_grid_file, grid, ext_vars, results_path, options, given_problems=problems,
        check_data=check_data, check_models=check_models,
    )  # fmt: skip
    raise typer.Exit(code)


def _keys(text: str | None) -> list[str] | None:
    return [key.strip() for key in text.split(",") if key.strip()] if text else None


@app.command()
def aggregate(
    results: Annotated[Path, typer.Argument(help="A results folder.")],
    rows: Annotated[str | None, typer.Option(help="Pivot rows: dotted setting keys, comma-separated.")] = None,
    cols: Annotated[str | None, typer.Option(help="Pivot columns, e.g. dataset.shots.")] = None,
    metric: Annotated[str | None, typer.Option(help="Pivot and plot metric (default f1_macro / bleu).")] = None,
    plots: Annotated[
        str | None,
        typer.Option(help="metric,forest,confusion,reliability,learning_curve (any of), all or none [metric,forest]."),
    ] = None,
    grid: Annotated[Path | None, typer.Option(help="The grid file, to list experiments not run yet.")] = None,
    seeds: Annotated[str | None, typer.Option(help="The grid's seeds, e.g. 1,2,3 (with --grid).")] = None,
    ext_var: ExtVarOpt = None,
    statistics: Annotated[bool, typer.Option(help="Intervals and paired comparisons from the predictions.")] = True,
    baseline: Annotated[
        str | None, typer.Option(help="Compare every experiment with this one (default: the best of its table).")
    ] = None,
    resamples: Annotated[int | None, typer.Option(help="Bootstrap resamples and permutations [1000].")] = None,
    confidence: Annotated[float | None, typer.Option(help="Confidence level of the intervals [0.95].")] = None,
    interval_method: Annotated[str | None, typer.Option(help="percentile or bca [percentile].")] = None,
    mcnemar: Annotated[str | None, typer.Option(help="McNemar's test for one seed: exact or mid-p [exact].")] = None,
    track: TrackOpt = None, tracking_uri: TrackingUriOpt = None, tracking_experiment: TrackingExperimentOpt = None,
) -> None:  # fmt: skip
    """Rebuild aggregated_results.{json,csv,md} and their plots from the result files; with --track, publish
    the results folder to the tracker (each run once)."""
    from sft.report.aggregate import ReportOptions, parse_plots
    from sft.report.aggregate import aggregate as aggregate_results
    from sft.report.aggregate import track as track_results
    from sft.report.collect import expected_runs

    tracking = _tracking(track, tracking_uri, tracking_experiment)
    try:
        seed_list = [int(seed) for seed in _keys(seeds) or []] or None
        expected = expected_runs(grid, parse_ext_vars(ext_var), seed_list) if grid else None
        given: dict[str, Any] = {"plots": parse_plots(plots) if plots is not None else None, "baseline": baseline,
                 "resamples": resamples, "level": confidence, "method": interval_method,
                 "mcnemar": mcnemar}  # fmt: skip
        # options not given keep ReportOptions' defaults (the one place they are set)
        options = ReportOptions(
            _keys(rows), _keys(cols), metric, expected=expected, statistics=statistics,
            **{key: value for key, value in given.items() if value is not None},
        )  # fmt: skip
        json_path, markdown_path = aggregate_results(results, options)
    except ConfigError as error:
        _fail(error)
    except (FileNotFoundError, ValueError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    except OSError as error:
        if not disk_full(error):
            raise
        typer.echo(f"The report was not written: {disk_full_reason(results)}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Wrote {json_path}, aggregated_results.csv and {markdown_path}")
    if tracking is not None:
        parent = track_results(results, tracking)
        if parent is None:
            typer.echo(f"Could not publish to {tracking.resolved_uri(results)}; see the warning above", err=True)
            raise typer.Exit(1)
        typer.echo(f"Published to {tracking.resolved_uri(results)} under parent run {parent}")


@app.command()
def validate(
    grid: GridArg, ext_var: ExtVarOpt = None, check_data: DataCheckOpt = True, check_models: ModelCheckOpt = True
) -> None:
    """Expand and validate a grid; print the experiment names, or every problem found."""
    from sft.experiment.preflight import validate as validate_grid

    ext_vars = _guard(parse_ext_vars, ext_var)
    configs = _guard(validate_grid, grid, ext_vars, "run-experiment", check_data, check_models)
    for name in configs:
        typer.echo(name)
    typer.echo(f"{len(configs)} experiment(s), all valid.")


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:

    setup_logging(logging.DEBUG if verbose else logging.INFO)


def main() -> None:
    if sys.argv[1:2] == ["run-experiment"] and os.environ.get(RUNNER_LOG_ENV):
        app()  # an experiment the grid runner started: it stops it by signal and reads how it ended
        return
    with exit_130_on_interrupt():  # SIGINT or SIGTERM at any moment: cleanups run, exit 130
        app()


if __name__ == "__main__":
    main()
