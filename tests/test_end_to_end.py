"""The whole path through the CLI, each run in its own process: a JSONNET grid -> result files -> tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, classification_config, merge, training_sections

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sft.cli", *args], cwd=cwd, capture_output=True, text=True, env=os.environ.copy()
    )


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, tiny_qwen, tiny_llama, sentiment_data, translation_data):
    """One grid with zero-shot, few-shot (with in-context examples), generation and a crashing run."""
    folder = tmp_path_factory.mktemp("grid")
    zero_shot = classification_config(sentiment_data, tiny_qwen)
    few_shot = merge(
        classification_config(sentiment_data, tiny_llama, **training_sections(shots=2)),
        {"training": {**training_sections()["training"], "icl_examples": 1}, "inference": {"icl_examples": 1}},
    )
    generation = {
        "dataset": {"path": str(translation_data), "task_type": "generation"},
        "model": {"name": str(tiny_qwen)},
        "prompting": {"instruction": "Translate to German.", "input_columns": ["en"], "output_column": "de"},
        "inference": {"generation_args": {"max_new_tokens": 4}},
    }
    # Valid as a config, but the model folder does not exist: with the model preflight off
    # (--no-check-models) it fails inside its own process, as a failure no check foresees would.
    broken = classification_config(sentiment_data, folder / "no-such-model")
    grid = folder / "grid.jsonnet"
    configs = {"zero-shot": zero_shot, "few-shot-icl": few_shot, "translate": generation, "broken": broken}
    grid.write_text(f"local configs = {json.dumps(configs)};\n{{ configs: configs }}\n")
    results = folder / "results"
    process = cli(  # a relative results path, as the README's commands give it
        "run-experiments", str(grid), "--results-path", "results", "--random-seed", "3", "--no-check-models",
        cwd=folder,
    )  # fmt: skip
    return process, results


def test_grid_records_every_run_and_exits_nonzero_on_failure(grid_run):
    process, results = grid_run
    assert process.returncode == 1, process.stderr[-3000:]
    for name in ("zero-shot", "few-shot-icl", "translate"):
        folder = results / name / "seed-3"
        for file in ("config.json", "results.json", "predictions.jsonl", "run.log", "status.json"):
            assert (folder / file).is_file(), f"{name}: {file} missing"
        outcome = json.loads((folder / "results.json").read_text())
        assert outcome["seed"] == 3 and outcome["experiment"] == name
        assert json.loads((folder / "status.json").read_text())["state"] == "done"
    few_shot = json.loads((results / "few-shot-icl" / "seed-3" / "results.json").read_text())
    assert few_shot["adapter_source"] == "trained" and few_shot["adapter"].startswith("_adapters/")
    assert (results / few_shot["adapter"] / "adapter_config.json").is_file()
    assert not (results / "zero-shot" / "seed-3" / "adapter").exists()

    status = json.loads((results / "broken" / "seed-3" / "status.json").read_text())
    assert status["state"] == "failed" and status["exit_code"] != 0
    assert "no-such-model" in status["log_tail"]
    assert not (results / "broken" / "seed-3" / "results.json").exists()
    assert "broken" in process.stderr and "FAILED" in process.stderr


def test_saved_config_reproduces_its_hash(grid_run):
    from sft.config import parse_config

    _, results = grid_run
    folder = results / "few-shot-icl" / "seed-3"
    saved = parse_config(json.loads((folder / "config.json").read_text()))
    assert saved.config_hash() == json.loads((folder / "results.json").read_text())["config_hash"]


def test_predictions_hold_inputs_reference_and_label_probabilities(grid_run):
    _, results = grid_run
    rows = [json.loads(line) for line in (results / "few-shot-icl" / "seed-3" / "predictions.jsonl").open()]
    assert len(rows) == 24
    for row in rows:
        assert set(row) == {"text", "reference", "prediction", "probabilities"}
        assert set(row["probabilities"]) == {"negative", "neutral", "positive"}
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-6
        assert row["prediction"] == max(row["probabilities"], key=row["probabilities"].get)
    generated = [json.loads(line) for line in (results / "translate" / "seed-3" / "predictions.jsonl").open()]
    assert all(set(row) == {"en", "reference", "prediction"} for row in generated)


def test_aggregated_tables(grid_run):
    _, results = grid_run
    document = json.loads((results / "aggregated_results.json").read_text())
    assert sorted((row["experiment"], row["seed"]) for row in document["rows"]) == [
        ("few-shot-icl", 3),
        ("translate", 3),
        ("zero-shot", 3),
    ]
    assert [failure["experiment"] for failure in document["failures"]] == ["broken"]
    table = (results / "aggregated_results.md").read_text()
    assert "· classification" in table and "· generation" in table and "## Failed runs" in table
    assert "dataset.shots" in table and "inference.icl_examples" in table and "f1_macro" in table and "bleu" in table
    # aggregate rebuilds the same rows from the result files alone
    (results / "aggregated_results.json").unlink()
    process = cli("aggregate", str(results))
    assert process.returncode == 0, process.stderr
    rebuilt = json.loads((results / "aggregated_results.json").read_text())
    assert [row["experiment"] for row in rebuilt["rows"]] == [row["experiment"] for row in document["rows"]]


def test_invalid_grid_runs_nothing_and_touches_nothing(tmp_path, tiny_qwen, sentiment_data):
    results = tmp_path / "results"
    results.mkdir()
    earlier = results / "aggregated_results.md"
    earlier.write_text("earlier report\n")
    good = classification_config(sentiment_data, tiny_qwen)
    bad = merge(good, {"dataset": {"shots": -1}, "prompting": {"output_column": "missing"}})
    grid = tmp_path / "grid.jsonnet"
    grid.write_text(json.dumps({"configs": {"good": good, "bad": bad, "worse": {**good, "loar": {}}}}))
    process = cli("run-experiments", str(grid), "--results-path", str(results))
    assert process.returncode == 2
    assert "dataset.shots" in process.stderr and "loar" in process.stderr and "did you mean 'lora'" in process.stderr
    assert earlier.read_text() == "earlier report\n"
    assert sorted(path.name for path in results.iterdir()) == ["aggregated_results.md"]


def test_quickstart_few_shot_beats_zero_shot(tmp_path):
    """The README's quickstart, as a user runs it: build the offline assets, run the grid, read the table."""
    build = subprocess.run([sys.executable, "-m", "sft.synthetic", str(tmp_path / "build/quickstart")], cwd=REPO)
    assert build.returncode == 0
    grid = tmp_path / "quickstart.jsonnet"
    text = (REPO / "etc/configs/jsonnet/quickstart.jsonnet").read_text()
    grid.write_text(text.replace("local root = 'build/quickstart';", f"local root = '{tmp_path}/build/quickstart';"))
    process = cli("run-experiments", str(grid), "--results-path", str(tmp_path / "results"))
    assert process.returncode == 0, process.stderr[-3000:]
    rows = json.loads((tmp_path / "results" / "aggregated_results.json").read_text())["rows"]
    accuracy = {row["experiment"]: row["metrics"]["accuracy"] for row in rows}
    zero_shot = max(value for name, value in accuracy.items() if name.startswith("zero-shot"))
    few_shot = [value for name, value in accuracy.items() if name.startswith("few-shot")]
    assert len(few_shot) >= 2 and min(few_shot) > zero_shot + 0.15, accuracy


def test_the_runner_prepares_each_runs_report_statistics_as_it_finishes(grid_run):
    from sft.report.cache import CACHE_FOLDER

    _, results = grid_run
    entries = sorted((results / CACHE_FOLDER).glob("*.safetensors"), key=lambda path: path.stat().st_mtime)
    assert len(entries) == 3  # one per finished run; the failed one has no predictions
    last_results = max((results / name / "seed-3" / "results.json").stat().st_mtime
                       for name in ("zero-shot", "few-shot-icl", "translate"))  # fmt: skip
    # prepared when the first runs finished, before the last run ended (not all by the final report),
    # and the final report used them (it removes the entries it does not use)
    assert entries[0].stat().st_mtime < last_results
