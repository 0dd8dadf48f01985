"""The command line (sft/cli.py): help, light imports, validation output and exit codes, refusals that
happen before any model is loaded and leave existing results alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import classification_config, merge, training_sections
from typer.testing import CliRunner

from sft.cli import app

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [
    "train",
    "predict",
    "evaluate",
    "run-experiment",
    "run-experiments",
    "aggregate",
    "validate",
    "export",
    "serve",
]
HEAVY_MODULES = ["torch", "transformers", "trl", "peft", "datasets", "sklearn"]


def python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def invoke(*args: Any):
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def write(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `folder` with its bytes and modification time."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def zero_shot(sentiment_data, tiny_llama) -> dict[str, Any]:
    """A valid zero-shot config: its model exists, so `validate` (which checks models) accepts it."""
    return classification_config(sentiment_data, tiny_llama)


@pytest.fixture
def few_shot(zero_shot) -> dict[str, Any]:
    return merge(zero_shot, training_sections(shots=2))


# --- help and imports ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_help_lists_every_command():
    result = python("-m", "sft.cli", "--help")
    assert result.returncode == 0, result.stderr
    # the first word of each line, with rich's box drawing removed (plain click help has none)
    listed = {line.strip("│ ").split(" ")[0] for line in result.stdout.splitlines() if line.strip("│ ")}
    for command in COMMANDS:
        assert command in listed, result.stdout


@pytest.mark.slow
def test_importing_the_cli_imports_no_heavy_library():
    code = f"import json, sys, sft.cli; print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    result = python("-c", code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# --- validate -----------------------------------------------------------------------------------------------------


def test_validate_prints_names_and_count(tmp_path, zero_shot, few_shot):
    grid = write(tmp_path / "grid.jsonnet", {"configs": {"zero-shot": zero_shot, "few-shot": few_shot}})
    result = invoke("validate", grid, "--no-check-data")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert sorted(lines[:2]) == ["few-shot", "zero-shot"]
    assert lines[-1] == "2 experiment(s), all valid."


def test_validate_checks_the_real_data(tmp_path, zero_shot, few_shot):
    grid = write(tmp_path / "grid.jsonnet", {"configs": {"zero-shot": zero_shot, "few-shot": few_shot}})
    result = invoke("validate", grid, "--check-data")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "2 experiment(s), all valid."


def test_validate_reports_every_problem_of_an_invalid_grid(tmp_path, zero_shot, few_shot):
    grid = {
        "configs": {
            "good": zero_shot,
            "typo": merge(zero_shot, {"dataset": {"shot": 2}}),
            "negative": merge(zero_shot, {"dataset": {"shots": -1}}),
            "no-training": merge(few_shot, {"training": None}),
            "a/b": zero_shot,
        }
    }
    result = invoke("validate", write(tmp_path / "grid.jsonnet", grid), "--no-check-data")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("4 problems found")
    assert "[typo]: dataset.shot: unknown key 'shot' (did you mean 'shots'?)" in result.stderr
    assert "[negative]: dataset.shots:" in result.stderr
    assert "[no-training]: training: this section is required" in result.stderr
    assert "[a/b]: experiment name 'a/b' is not a safe folder name" in result.stderr
    assert "[good]" not in result.stderr


def test_validate_reports_a_bad_trainer_argument_with_a_suggestion(tmp_path, few_shot):
    raw = merge(few_shot, {"training": {"trainer_args": {"num_train_epoch": 2, "learning_rate": 1e-3}}})
    result = invoke("validate", write(tmp_path / "exp.json", raw), "--no-check-data")
    assert result.exit_code == 2
    assert "training.trainer_args.num_train_epoch: not an argument of trl.SFTConfig" in result.stderr
    assert "(did you mean 'num_train_epochs'?)" in result.stderr
    assert "learning_rate" not in result.stderr


def test_validate_reports_a_missing_column(tmp_path, zero_shot):
    raw = merge(zero_shot, {"prompting": {"input_columns": ["review"], "output_column": "label"}})
    result = invoke("validate", write(tmp_path / "exp.json", raw), "--check-data")
    assert result.exit_code == 2
    assert "'review'" in result.stderr
    assert "not in split 'test'" in result.stderr
    assert "'text'" in result.stderr  # the columns that do exist


def test_validate_with_a_malformed_ext_var_exits_2(tmp_path, zero_shot):
    result = invoke("validate", write(tmp_path / "exp.json", zero_shot), "--ext-var", "novalue", "--no-check-data")
    assert result.exit_code == 2
    assert "--ext-var 'novalue': write it as key=value" in result.stderr


def test_validate_passes_ext_vars_to_jsonnet(tmp_path, zero_shot):
    grid = tmp_path / "grid.jsonnet"
    grid.write_text(
        f"local base = {json.dumps(zero_shot)};\n"
        "{ configs: { [std.extVar('name')]: base + { model+: { name: std.extVar('model') } } } }\n",
        encoding="utf-8",
    )
    result = invoke(
        "validate",
        grid,
        "--ext-var",
        "name=from-cli",
        "--ext-var",
        "model=org/m",
        "--no-check-data",
        "--no-check-models",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["from-cli", "1 experiment(s), all valid."]


def test_validate_on_a_missing_file_exits_2(tmp_path):
    result = invoke("validate", tmp_path / "nowhere.jsonnet", "--no-check-data")
    assert result.exit_code == 2
    assert "nowhere.jsonnet: no such file" in result.stderr


# --- single-experiment commands refuse before doing anything ------------------------------------------------------


@pytest.mark.slow
def test_train_with_zero_shots_exits_2_before_loading_any_model(tmp_path, zero_shot):
    config = write(tmp_path / "zero.json", merge(zero_shot, {"lora": {}, "training": {}}))
    results = tmp_path / "results"
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from sft.cli import app\n"
        f"result = CliRunner().invoke(app, ['train', {str(config)!r}, '--results-path', {str(results)!r}])\n"
        f"print(json.dumps({{'exit_code': result.exit_code, 'stderr': result.stderr,"
        f" 'loaded': [m for m in {HEAVY_MODULES!r} if m in sys.modules]}}))\n"
    )
    run = python("-c", code)
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout.strip().splitlines()[-1])

    assert outcome["exit_code"] == 2
    assert "dataset.shots: `train` needs shots > 0" in outcome["stderr"]
    assert outcome["loaded"] == []
    assert not results.exists()


def test_train_with_zero_shots_exits_2_from_the_command_line(tmp_path, zero_shot):
    config = write(tmp_path / "zero.json", merge(zero_shot, {"lora": {}, "training": {}}))
    result = invoke("train", config, "--results-path", tmp_path / "results")
    assert result.exit_code == 2
    assert "`train` needs shots > 0" in result.stderr
    assert not (tmp_path / "results").exists()


def test_single_command_refuses_an_unsafe_name(tmp_path, zero_shot):
    config = write(tmp_path / "exp.json", zero_shot)
    result = invoke("evaluate", config, "--results-path", tmp_path / "results", "--name", "../escape")
    assert result.exit_code == 2
    assert "--name: experiment name '../escape' is not a safe folder name" in result.stderr
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "escape").exists()


def existing_results(folder: Path, name: str) -> Path:
    run = folder / name / "seed-42"
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"metrics": {"accuracy": 0.9}}\n', encoding="utf-8")
    (run / "predictions.jsonl").write_text('{"prediction": "positive"}\n', encoding="utf-8")
    (folder / "aggregated_results.md").write_text("# earlier results\n", encoding="utf-8")
    return run


def test_bad_config_leaves_existing_results_untouched(tmp_path, zero_shot):
    results = tmp_path / "results"
    existing_results(results, "exp")
    before = snapshot(results)
    config = write(tmp_path / "exp.json", merge(zero_shot, {"inference": {"batch_sise": 4}}))

    result = invoke("evaluate", config, "--results-path", results)

    assert result.exit_code == 2
    assert "inference.batch_sise: unknown key" in result.stderr
    assert snapshot(results) == before


def test_bad_data_leaves_existing_results_untouched(tmp_path, zero_shot):
    results = tmp_path / "results"
    run = existing_results(results, "exp")
    before = snapshot(run)
    config = write(tmp_path / "exp.json", merge(zero_shot, {"dataset": {"test_split": "tset"}}))

    result = invoke("evaluate", config, "--results-path", results)

    assert result.exit_code == 2
    assert "split 'tset' not found" in result.stderr
    after = snapshot(run)
    for name in ("results.json", "predictions.jsonl"):
        assert after[name] == before[name]
    assert not (run / "config.json").exists()


# --- aggregate ----------------------------------------------------------------------------------------------------


def test_aggregate_on_a_missing_folder_exits_2(tmp_path):
    missing = tmp_path / "no-results"
    result = invoke("aggregate", missing)
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "does not exist" in result.stderr
    assert not missing.exists()


def test_aggregate_on_an_empty_folder_writes_both_reports(tmp_path):
    result = invoke("aggregate", tmp_path)
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "aggregated_results.json").read_text(encoding="utf-8"))
    assert document["rows"] == [] and document["failures"] == []
    assert (tmp_path / "aggregated_results.md").read_text(encoding="utf-8").startswith("# Aggregated results")


def test_run_experiments_reports_bad_options_with_the_grids_problems_at_once(tmp_path):
    """An unknown executor and --jobs 0 are named together with the grid's own problems, in one pass,
    before anything runs or is written."""
    grid = write(tmp_path / "grid.json", {"configs": {"a": {"dataset": {"path": "x"}}}})
    result = invoke(
        "run-experiments", grid, "--executor", "forkserve", "--jobs", "0", "--results-path", tmp_path / "out"
    )
    assert result.exit_code == 2
    assert "unknown executor 'forkserve' (did you mean 'forkserver'?)" in result.output
    assert "--jobs must be at least 1" in result.output
    assert "model: required key is missing" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--slurm-partition", "gpu"), "--slurm-* options apply to --executor slurm only; add it or drop them"),
        (("--ray-address", "head:6379"), "--ray-address applies to --executor ray only; add it or drop it"),
        (("--executor", "ray", "--slurm-time", "5"), "--slurm-* options apply to --executor slurm only"),
        (("--executor", "ray", "--gpus", "0"), "--gpus: ray assigns GPUs itself"),
    ],
)
def test_run_experiments_refuses_the_flags_of_an_executor_that_does_not_run(tmp_path, zero_shot, flags, message):
    grid = write(tmp_path / "grid.json", {"configs": {"a": zero_shot}})
    result = invoke("run-experiments", grid, "--results-path", tmp_path / "out", *flags)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()
