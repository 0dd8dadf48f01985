"""Command line: `python -m sft.cli COMMAND`. Each command parses its arguments and calls one library
function. Nothing heavy (torch, transformers, trl, peft) is imported here, so `--help` is instant."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from sft.config import DEFAULT_SEED, ConfigError

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


def _fail(error: ConfigError) -> None:
    typer.echo(str(error), err=True)
    raise typer.Exit(2)


def _single(path: Path, command: str, name: str | None, ext_vars: list[str] | None, results: Path, seed: int):
    """(config, run) for a single-experiment command; config errors exit with status 2."""
    from sft.config.grid import load_single, parse_ext_vars
    from sft.results.layout import Run, check_name

    try:
        file_name, config = load_single(path, command, parse_ext_vars(ext_vars))
    except ConfigError as error:
        _fail(error)
    problem = check_name(name or file_name)
    if problem:
        _fail(ConfigError([f"--name: {problem}"]))
    return config, Run(name or file_name, seed, results)


def _guard(function, *args):
    """Call a library function; a ConfigError (bad config or data) becomes a clear message and exit 2."""
    try:
        return function(*args)
    except ConfigError as error:
        _fail(error)


@app.command()
def train(
    config: ConfigArg, results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    name: NameOpt = None, ext_var: ExtVarOpt = None,
) -> None:  # fmt: skip
    """Train a LoRA adapter on the few-shot training examples; save adapter, tokenizer and config."""
    from sft.experiment.run import train as train_experiment

    experiment, run = _single(config, "train", name, ext_var, results_path, random_seed)
    typer.echo(f"Adapter saved to {_guard(train_experiment, experiment, run)}")


@app.command()
def predict(
    config: Annotated[Path, typer.Argument(help="A JSON config (one experiment), or an exported folder with --input.")],
    results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    name: NameOpt = None, ext_var: ExtVarOpt = None,
    input: InputOpt = None, output: OutputOpt = None,
) -> None:  # fmt: skip
    """Predict the test split into predictions.jsonl; or, with --input/--output, a file of new inputs (with an
    exported folder, or a config whose run has finished)."""
    if (input is None) != (output is None):
        _fail(ConfigError(["predict: give --input and --output together (or neither, to predict the test split)"]))
    if input is not None:
        from sft.serving.api import load_export, load_run
        from sft.serving.files import predict_file

        if config.is_dir():
            model = _guard(load_export, config)
        else:
            model = _guard(load_run, *_single(config, "predict", name, ext_var, results_path, random_seed))
        typer.echo(f"Predictions written to {_guard(predict_file, model, input, output)}")
        return
    from sft.experiment.run import predict as predict_experiment

    experiment, run = _single(config, "predict", name, ext_var, results_path, random_seed)
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
    from sft.serving.server import serve as serve_export

    _guard(serve_export, exported, host, port, max_batch, limits_of(max_inputs, max_bytes))


@app.command()
def evaluate(
    config: ConfigArg, results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    name: NameOpt = None, ext_var: ExtVarOpt = None,
) -> None:  # fmt: skip
    """Predict the test split and compute the metrics; write predictions.jsonl and results.json."""
    from sft.experiment.run import evaluate as evaluate_experiment

    experiment, run = _single(config, "evaluate", name, ext_var, results_path, random_seed)
    _guard(evaluate_experiment, experiment, run)
    typer.echo(f"Results written to {run.folder / 'results.json'}")


@app.command("run-experiment")
def run_experiment(
    config: ConfigArg, results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    name: NameOpt = None, ext_var: ExtVarOpt = None,
) -> None:  # fmt: skip
    """Train (when shots > 0) and evaluate one experiment in this process."""
    from sft.experiment.run import run_experiment as run_one

    experiment, run = _single(config, "run-experiment", name, ext_var, results_path, random_seed)
    _guard(run_one, experiment, run)
    typer.echo(f"Results written to {run.folder / 'results.json'}")


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        _fail(ConfigError([f"{option} {text!r}: give comma-separated integers, e.g. 1,2,3"]))


@app.command("run-experiments")
def run_experiments(
    grid: GridArg, results_path: ResultsOpt = Path("results"), random_seed: SeedOpt = DEFAULT_SEED,
    ext_var: ExtVarOpt = None, check_data: DataCheckOpt = True,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds; one run per experiment and seed.")] = None,
    gpus: Annotated[str | None, typer.Option(help="GPU ids to use, e.g. 0,1,2,3: one slot per GPU.")] = None,
    jobs: Annotated[int, typer.Option(help="Experiments at once without --gpus (CPU, or Ray tasks in flight).")] = 1,
    executor: Annotated[str, typer.Option(help="forkserver (default), subprocess or ray.")] = "forkserver",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: a local Ray).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop an experiment after this many seconds.")] = None,
    retries: Annotated[int, typer.Option(help="Run a failed experiment again up to this many times.")] = 0,
    force: Annotated[bool, typer.Option(help="Re-run finished experiments (old results kept aside).")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print what would run and what would be skipped; run nothing.")] = False,
) -> None:  # fmt: skip
    """Validate every experiment of a grid, run each in a fresh process (resuming), then aggregate."""
    from sft.config.grid import parse_ext_vars
    from sft.config.validation import validate_grid
    from sft.runner.scheduler import Options, option_problems
    from sft.runner.scheduler import run_experiments as run_grid

    options = Options(
        seeds=_int_list(seeds, "--seeds") or [random_seed],
        gpus=[part.strip() for part in gpus.split(",") if part.strip()] if gpus is not None else None,
        jobs=jobs, executor=executor, ray_address=ray_address, timeout=timeout, retries=retries,
        force=force, dry_run=dry_run,
    )  # fmt: skip
    # the options' own problems (an unknown executor, --jobs 0) are reported with the grid's, in one pass
    problems = option_problems(options)
    try:
        configs = validate_grid(grid, parse_ext_vars(ext_var), "run-experiment", check_data)
    except ConfigError as error:
        _fail(ConfigError([*problems, *error.messages]))
    if problems:
        _fail(ConfigError(problems))
    raise typer.Exit(_guard(run_grid, configs, results_path, options))


def _keys(text: str | None) -> list[str] | None:
    return [key.strip() for key in text.split(",") if key.strip()] if text else None


@app.command()
def aggregate(
    results: Annotated[Path, typer.Argument(help="A results folder.")],
    rows: Annotated[str | None, typer.Option(help="Pivot rows: dotted setting keys, comma-separated.")] = None,
    cols: Annotated[str | None, typer.Option(help="Pivot columns, e.g. dataset.shots.")] = None,
    metric: Annotated[str | None, typer.Option(help="Pivot and plot metric (default f1_macro / bleu).")] = None,
    plots: Annotated[str, typer.Option(help="metric,confusion,reliability (any of), all or none.")] = "metric",
    grid: Annotated[Path | None, typer.Option(help="The grid file, to list experiments not run yet.")] = None,
    seeds: Annotated[str | None, typer.Option(help="The grid's seeds, e.g. 1,2,3 (with --grid).")] = None,
    ext_var: ExtVarOpt = None,
) -> None:
    """Rebuild aggregated_results.{json,csv,md} and their plots from the result files."""
    from sft.config.grid import parse_ext_vars
    from sft.report.aggregate import ReportOptions, parse_plots
    from sft.report.aggregate import aggregate as aggregate_results
    from sft.report.collect import expected_runs

    try:
        seed_list = [int(seed) for seed in _keys(seeds) or []] or None
        expected = expected_runs(grid, parse_ext_vars(ext_var), seed_list) if grid else None
        options = ReportOptions(_keys(rows), _keys(cols), metric, parse_plots(plots), expected)
        json_path, markdown_path = aggregate_results(results, options)
    except ConfigError as error:
        _fail(error)
    except (FileNotFoundError, ValueError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Wrote {json_path}, aggregated_results.csv and {markdown_path}")


@app.command()
def validate(grid: GridArg, ext_var: ExtVarOpt = None, check_data: DataCheckOpt = True) -> None:
    """Expand and validate a grid; print the experiment names, or every problem found."""
    from sft.config.grid import parse_ext_vars
    from sft.config.validation import validate_grid

    configs = _guard(validate_grid, grid, _guard(parse_ext_vars, ext_var), "run-experiment", check_data)
    for name in configs:
        typer.echo(name)
    typer.echo(f"{len(configs)} experiment(s), all valid.")


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    from sft.results.logs import setup_logging

    setup_logging(logging.DEBUG if verbose else logging.INFO)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
