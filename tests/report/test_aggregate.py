"""sft.report.aggregate: aggregating results.json files (as sft.experiment.run writes them) into JSON, CSV and
Markdown."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers.report import (
    CLASSIFICATION_METRICS,
    CLASSIFICATION_RUNS,
    GENERATION_METRICS,
    GENERATION_RUNS,
    MODEL,
    SEEDS,
    build_planted,
    build_results,
    classification_config,
    classification_metrics,
    score,
    tables,
    write_results,
    write_status,
)
from scipy.stats import t as scipy_t

from sft.config import parse_config
from sft.config.parsing import flatten
from sft.report.aggregate import ReportOptions, aggregate, collect, varying_settings

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CLASSIFICATION = "cardiffnlp/tweet_eval (sentiment) · classification"
GENERATION = "bentrevett/multi30k · generation"


@pytest.fixture
def results(tmp_path) -> Path:
    return build_results(tmp_path)


def read_aggregate(root: Path, options: ReportOptions | None = None) -> tuple[dict[str, Any], str]:
    json_path, markdown_path = aggregate(root, options)
    assert json_path == root / "aggregated_results.json"
    assert markdown_path == root / "aggregated_results.md"
    return json.loads(json_path.read_text(encoding="utf-8")), markdown_path.read_text(encoding="utf-8")


def columns(found: dict[str, list[dict[str, str]]], section: str) -> list[str]:
    return list(found[f"{section} columns"][0])


# -- flatten -------------------------------------------------------------------------------------------


def test_flatten_nested_dicts():
    nested = {"a": {"b": 1, "c": {"d": [1, 2], "e": None}}, "f": "x", "g": {}, "h": {"i": {"j": True}}}
    assert flatten(nested) == {"a.b": 1, "a.c.d": [1, 2], "a.c.e": None, "f": "x", "g": {}, "h.i.j": True}
    assert flatten({}) == {"": {}}
    assert flatten(3) == {"": 3}
    assert flatten({"lora": None, "dataset": {"shots": 0}}) == {"lora": None, "dataset.shots": 0}


# -- rows and tables -----------------------------------------------------------------------------------


def test_one_row_per_experiment_and_seed(results):
    document, _ = read_aggregate(results)
    assert document["schema_version"] == 2
    rows = document["rows"]
    expected = sorted([(e, s) for e in CLASSIFICATION_RUNS for s in SEEDS] + [(e, 1) for e in GENERATION_RUNS])
    assert [(row["experiment"], row["seed"]) for row in rows] == expected
    assert document["failures"] == document["skipped"] == document["missing"] == document["problems"] == []
    for row in rows:
        assert row["status"] == "done"
        assert row["total_seconds"] == 2.5 + row["seed"]
        assert row["folder"] == f"{row['experiment']}/seed-{row['seed']}"
        if row["experiment"] in CLASSIFICATION_RUNS:
            raw = CLASSIFICATION_RUNS[row["experiment"]]
            assert row["task_type"] == "classification"
            assert row["dataset"] == "cardiffnlp/tweet_eval (sentiment)"
            assert row["config_hash"] == parse_config(raw).config_hash()
            assert row["metrics"]["accuracy"] == score(row["experiment"], row["seed"])
            # every scalar metric, nested ones flattened; lists (the confusion matrix) stay in results.json
            assert row["metrics"]["per_class.negative.f1"] == 0.6667
            assert not any(key.startswith("confusion_matrix") for key in row["metrics"])
            assert row["settings"]["dataset.shots"] == raw["dataset"]["shots"]
            assert row["settings"]["model.name"] == MODEL
        else:
            assert row["task_type"] == "generation"
            assert set(row["metrics"]) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match"}


def test_summary_and_constant_settings(results):
    document, markdown = read_aggregate(results)
    summary = document["summary"]
    assert summary["runs_done"] == 10 and summary["experiments_done"] == 6
    assert summary["datasets"] == ["bentrevett/multi30k", "cardiffnlp/tweet_eval (sentiment)"]
    assert summary["models"] == [MODEL]
    assert summary["compute_seconds"] == pytest.approx(sum(2.5 + seed for seed in SEEDS) * 4 + 3.5 * 2)
    assert "- Runs: 10 done (6 experiment(s)), 0 failed, 0 missing" in markdown
    assert "- Compute time: 39.0 s in finished runs" in markdown
    table = tables(markdown)["Settings constant across the grid, defaults left out"]
    constant = {row["setting"]: row for row in table}
    assert constant["model.name"] == {"setting": "model.name", "value": MODEL, "runs": "all"}
    # only the adapter runs have it
    assert constant["training.trainer_args.num_train_epochs"] == {
        "setting": "training.trainer_args.num_train_epochs", "value": "3", "runs": "4 of 10"
    }  # fmt: skip
    assert "lora" not in constant and "dataset.shots" not in constant
    # the schema's defaults (lora.r 8, inference.batch_size 8, ...) are what nobody set: left out
    assert "lora.r" not in constant and "inference.batch_size" not in constant and "model.dtype" not in constant
    assert set(constant) == {
        "dataset.args.name", "model.name", "training.trainer_args.num_train_epochs",
        "training.trainer_args.learning_rate",
    }  # fmt: skip
    assert document["constant_settings"]["model.name"] == MODEL
    assert "dataset.shots" in document["varying_settings"]


def test_seeds_collapse_to_mean_std_and_the_best_is_bold(results):
    _, markdown = read_aggregate(results)
    found = tables(markdown)
    header = columns(found, CLASSIFICATION)
    assert header == ["experiment", "dataset.shots", "lora.init_lora_weights", "inference.icl_examples", "n",
                      *CLASSIFICATION_METRICS]  # fmt: skip
    rows = {row["experiment"]: row for row in found[CLASSIFICATION]}
    assert set(rows) == set(CLASSIFICATION_RUNS)
    for experiment, row in rows.items():
        values = [score(experiment, seed) for seed in SEEDS]
        mean = sum(values) / 2
        std = (sum((v - mean) ** 2 for v in values) / 1) ** 0.5  # sample std over the two seeds
        assert row["n"] == "2"
        # two seeds: the 95% t-interval of the mean, mean ± t(0.975, 1) * std / sqrt(2)
        low, high = scipy_t.interval(0.95, 1, loc=mean, scale=std / 2**0.5)
        assert row["accuracy"].strip("*") == f"{mean:.4f} ± {std:.4f} [{low:.4f}, {high:.4f}]"
    # zero-shot_icl1 has the highest scores: bold in every higher-better column
    best = rows["zero-shot_icl1"]
    assert all(best[m].startswith("**") for m in ("accuracy", "f1_macro", "f1_micro", "mcc"))
    assert not any(rows["shots8_default"][m].startswith("**") for m in CLASSIFICATION_METRICS)
    assert rows["zero-shot_icl1"]["lora.init_lora_weights"] == "—"  # the run has no adapter
    assert rows["shots8_gaussian"]["lora.init_lora_weights"] == "gaussian"
    # every ece ties: nothing is bold
    assert not any(row["ece"].startswith("**") for row in rows.values())


def test_lower_is_better_metrics_bold_the_smallest(tmp_path):
    for index, ece in enumerate([0.3, 0.1, 0.2]):
        write_results(tmp_path, f"e{index}", 1, classification_config(0, icl=index),
                      {**classification_metrics(0.5 + index / 10), "ece": ece})  # fmt: skip
    _, markdown = read_aggregate(tmp_path)
    rows = {row["experiment"]: row for row in tables(markdown)[CLASSIFICATION]}
    assert rows["e1"]["ece"] == "**0.1000**" and rows["e0"]["ece"] == "0.3000"
    assert rows["e2"]["accuracy"] == "**0.7000**"
    assert "lower is better for ece" in markdown


def test_lora_keys_appear_only_when_they_vary_between_adapter_runs(tmp_path):
    write_results(tmp_path, "zero-shot", 1, classification_config(0), classification_metrics(0.4))
    write_results(tmp_path, "shots8", 1, classification_config(8), classification_metrics(0.6))
    write_results(tmp_path, "shots16", 1, classification_config(16), classification_metrics(0.7))
    assert varying_settings(collect(tmp_path).rows) == ["dataset.shots"]
    _, markdown = read_aggregate(tmp_path)
    found = tables(markdown)
    assert columns(found, CLASSIFICATION) == ["experiment", "dataset.shots", "n", *CLASSIFICATION_METRICS]
    # rows in natural order of the varying settings: 0 < 8 < 16
    assert [row["experiment"] for row in found[CLASSIFICATION]] == ["zero-shot", "shots8", "shots16"]


def test_each_dataset_and_task_type_has_its_own_table(results):
    write_results(results, "hate", 1, {**classification_config(0), "dataset": {"path": "tweet_eval_hate"}},
                  classification_metrics(0.9))  # fmt: skip
    _, markdown = read_aggregate(results)
    found = tables(markdown)
    assert markdown.index(f"## {GENERATION}") < markdown.index(f"## {CLASSIFICATION}")
    assert [row["experiment"] for row in found["tweet_eval_hate · classification"]] == ["hate"]
    generation_header = columns(found, GENERATION)
    assert generation_header == ["experiment", "inference.generation_args.max_new_tokens", "n", *GENERATION_METRICS]
    assert {row["experiment"] for row in found[GENERATION]} == set(GENERATION_RUNS)
    assert {row["experiment"] for row in found[CLASSIFICATION]} == set(CLASSIFICATION_RUNS)
    long = next(row for row in found[GENERATION] if row["experiment"] == "translate_long")
    assert long["inference.generation_args.max_new_tokens"] == "64"
    assert long["bleu"] == "**21.00**"


def test_only_metrics_present_in_some_run_are_columns(tmp_path):
    metrics = {"accuracy": 0.5, "f1_macro": 0.4}  # evaluation.metrics chose a subset
    write_results(tmp_path, "a", 1, classification_config(0), metrics)
    write_results(tmp_path, "b", 1, classification_config(0, icl=1), metrics)
    _, markdown = read_aggregate(tmp_path)
    assert columns(tables(markdown), CLASSIFICATION) == ["experiment", "inference.icl_examples", "n", "accuracy",
                                                         "f1_macro"]  # fmt: skip


# -- the golden report ---------------------------------------------------------------------------------


def golden_results(root: Path) -> Path:
    """Every kind of run folder: finished (two task types, several seeds), failed (an error, a timeout),
    interrupted, still running, a state this version does not know, a corrupt result file, results kept
    aside."""
    build_results(root)
    build_planted(root)  # runs with predictions: intervals, paired comparisons, a forest plot
    write_results(root, "shots16_default", 1, classification_config(16), classification_metrics(0.6))
    write_results(root, "shots16_default", 2, classification_config(16), classification_metrics(0.64))
    log_tail = "".join(f"line {i}\n" for i in range(1, 9)) + "RuntimeError: CUDA out of memory\n"
    write_status(root, "crashed", 3, "failed", exit_code=1, duration_seconds=12.5, log_tail=log_tail)
    write_status(
        root, "hung", 1, "failed", reason="timeout after 3600 s", exit_code=-9, duration_seconds=3600.0, log_tail=""
    )
    (root / "hung" / "seed-1" / "run.log").write_text("loading\nstill loading\n", encoding="utf-8")
    write_status(root, "stopped", 1, "interrupted", reason="interrupted")
    write_status(root, "in-flight", 1, "running")
    write_status(root, "odd", 1, "paused-by-operator")
    broken = root / "broken" / "seed-1"
    broken.mkdir(parents=True)
    (broken / "results.json").write_text('{"experiment": "broken", "seed": 1, "metr', encoding="utf-8")
    # older results a runner kept aside are not runs of the grid
    aside = root / "shots8_default" / "seed-1" / "previous" / "seed-1"
    aside.mkdir(parents=True)
    write_results(aside.parent, "seed-1", 1, classification_config(8), classification_metrics(0.99))
    return root


def test_golden_markdown(tmp_path):
    root = golden_results(tmp_path)
    expected = [(name, None) for name in (*CLASSIFICATION_RUNS, *GENERATION_RUNS, "shots16_default", "never-run")]
    _, markdown = read_aggregate(root, ReportOptions(expected=expected))
    golden = GOLDEN / "aggregated_results.md"
    if os.environ.get("SFT_UPDATE_GOLDEN"):
        golden.write_text(markdown, encoding="utf-8")
    assert markdown == golden.read_text(encoding="utf-8"), "run with SFT_UPDATE_GOLDEN=1 and review the diff"
    # the same files give the same report, byte for byte
    assert read_aggregate(root, ReportOptions(expected=expected))[1] == markdown


def test_golden_fixture_sorts_every_run(tmp_path):
    root = golden_results(tmp_path)
    collected = collect(root, [("never-run", None), ("crashed", None), ("shots8_default", 3)])
    assert len(collected.rows) == 16  # the aside copy is not a row
    assert [(f["experiment"], f["state"]) for f in collected.failures] == [("crashed", "failed"), ("hung", "failed")]
    assert "still loading" in collected.failures[1]["log_tail"]  # read from run.log when status has none
    assert [(m["experiment"], m["seed"], m["state"]) for m in collected.missing] == [
        ("in-flight", 1, "running"),
        ("never-run", None, "not started"),
        ("odd", 1, "paused-by-operator"),
        ("shots8_default", 3, "not started"),
        ("stopped", 1, "interrupted"),
    ]
    assert collected.problems == [
        "broken/seed-1/results.json: unreadable result file (JSONDecodeError: Unterminated string starting at: "
        "line 1 column 37 (char 36))"
    ]


# -- problems and failures -----------------------------------------------------------------------------


@pytest.mark.faults
def test_corrupt_results_are_named_and_the_others_still_aggregate(results):
    truncated = results / "broken" / "seed-1" / "results.json"
    truncated.parent.mkdir(parents=True)
    truncated.write_text('{"experiment": "broken", "seed": 1, "metr', encoding="utf-8")
    incomplete = results / "incomplete" / "seed-4" / "results.json"
    incomplete.parent.mkdir(parents=True)
    incomplete.write_text(json.dumps({"experiment": "incomplete", "seed": 4}), encoding="utf-8")

    document, markdown = read_aggregate(results)
    assert len(document["rows"]) == len(CLASSIFICATION_RUNS) * len(SEEDS) + len(GENERATION_RUNS)
    assert {row["experiment"] for row in document["rows"]} == set(CLASSIFICATION_RUNS) | set(GENERATION_RUNS)
    assert len(document["problems"]) == 2
    assert any(problem.startswith("broken/seed-1/results.json: ") for problem in document["problems"])
    assert any(problem.startswith("incomplete/seed-4/results.json: ") for problem in document["problems"])
    assert "- Unreadable files: 2 (listed at the end)" in markdown
    unreadable = markdown.split("## Unreadable files", 1)[1]
    assert "broken/seed-1/results.json" in unreadable and "incomplete/seed-4/results.json" in unreadable
    assert f"## {CLASSIFICATION}" in markdown and f"## {GENERATION}" in markdown
    # the incomplete file's missing fields are named once, relative to the results folder
    (problem,) = [problem for problem in document["problems"] if problem.startswith("incomplete/")]
    assert "config_hash: Field required" in problem and problem.count("results.json") == 1
    assert str(results) not in markdown


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe not utf-8",
        b"[]",
        b"null",
        b'{"experiment": "broken", "seed": 1, "task_type": "classification", "config_hash": "h", "metrics": null, '
        b'"config": {}}',
    ],
    ids=["empty", "not-utf8", "list", "null", "metrics-null"],
)
def test_any_unusable_results_file_is_a_problem_not_a_crash(results, content):
    broken = results / "broken" / "seed-1" / "results.json"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(content)
    document, markdown = read_aggregate(results)
    assert len(document["problems"]) == 1
    assert document["problems"][0].startswith("broken/seed-1/results.json: unreadable result file")
    assert "broken/seed-1/results.json" in markdown.split("## Unreadable files", 1)[1]
    assert len(document["rows"]) == len(CLASSIFICATION_RUNS) * len(SEEDS) + len(GENERATION_RUNS)


@pytest.mark.parametrize("content", ['{"state": "fail', "[]", '{"state": "failed"}'])
def test_any_unusable_status_file_is_reported_not_a_crash(results, content):
    status = results / "lost" / "seed-5" / "status.json"
    status.parent.mkdir(parents=True)
    status.write_text(content, encoding="utf-8")
    document, markdown = read_aggregate(results)
    named = any("lost/seed-5/status.json" in problem for problem in document["problems"])
    listed = [(f.get("experiment"), f.get("seed")) for f in document["failures"]] == [("lost", 5)]
    assert named or listed, document
    assert len(document["rows"]) == len(CLASSIFICATION_RUNS) * len(SEEDS) + len(GENERATION_RUNS)
    assert f"## {CLASSIFICATION}" in markdown


def test_failed_runs_have_their_own_section_with_their_last_log_lines(results):
    tail = "".join(f"step {i}\n" for i in range(10)) + "Killed\n"
    write_status(results, "crashed", 3, "failed", exit_code=137, duration_seconds=12.5, log_tail=tail)
    # a run still going is missing, not failed; a finished run's status does not matter
    write_status(results, "running", 1, "running")
    write_status(results, "shots8_default", 1, "done", exit_code=0)

    document, markdown = read_aggregate(results)
    assert [(f["experiment"], f["seed"], f["exit_code"]) for f in document["failures"]] == [("crashed", 3, 137)]
    assert [(m["experiment"], m["state"]) for m in document["missing"]] == [("running", "running")]
    assert "1 failed, 1 missing" in markdown
    assert "12.5 s in failed runs" in markdown
    found = tables(markdown)
    assert found["Failed runs"] == [
        {
            "experiment": "crashed",
            "seed": "3",
            "state": "failed",
            "reason": "—",
            "exit code": "137",
            "log": "crashed/seed-3/run.log",
        }
    ]
    block = markdown.split("crashed seed 3, last lines of its log:", 1)[1].split("```text\n", 1)[1].split("```")[0]
    assert block == "step 6\nstep 7\nstep 8\nstep 9\nKilled\n"
    assert "crashed" not in {row["experiment"] for row in document["rows"]}
    assert ("shots8_default", 1) in {(row["experiment"], row["seed"]) for row in document["rows"]}


def test_missing_experiments_from_the_grid_file(results, tmp_path_factory):
    from sft.report.collect import expected_runs

    grid = tmp_path_factory.mktemp("grid") / "grid.jsonnet"
    configs = {**CLASSIFICATION_RUNS, "later": classification_config(32)}
    grid.write_text(json.dumps({"configs": configs}), encoding="utf-8")
    expected = expected_runs(grid, None, [1, 2])
    assert ("later", 2) in expected and len(expected) == 10
    document, markdown = read_aggregate(results, ReportOptions(expected=expected))
    assert [(m["experiment"], m["seed"], m["state"]) for m in document["missing"]] == [
        ("later", 1, "not started"),
        ("later", 2, "not started"),
    ]
    assert found_missing(markdown) == [("later", "1"), ("later", "2")]


def found_missing(markdown: str) -> list[tuple[str, str]]:
    return [(row["experiment"], row["seed"]) for row in tables(markdown)["Missing runs"]]


def test_no_run_sections_without_such_runs(results):
    _, markdown = read_aggregate(results)
    for section in ("Failed runs", "Skipped runs", "Missing runs", "Unreadable files", "Per-experiment plots"):
        assert f"## {section}" not in markdown


def test_aggregate_of_a_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        aggregate(tmp_path / "nowhere")


def test_a_done_status_without_results_is_missing_not_done(results):
    write_status(results, "moved", 1, "done", exit_code=0)
    document, _ = read_aggregate(results)
    assert [(m["experiment"], m["state"]) for m in document["missing"]] == [("moved", "done (no results.json)")]
    assert "moved" not in {row["experiment"] for row in document["rows"]}


def test_long_or_multiline_settings_stay_one_table_cell(tmp_path):
    from sft.report.tables import CELL_CHARACTERS, setting_text

    long = "Classify | the tweet.\n" * 20
    assert setting_text(long).count("\\|") == setting_text(long).count("|")  # every pipe escaped
    assert "\n" not in setting_text(long) and setting_text(long).endswith("…")
    assert len(setting_text(long).replace("\\|", "|")) == CELL_CHARACTERS
    for index, instruction in enumerate(["Short.", long]):
        raw = classification_config(0)
        raw["prompting"]["instruction"] = instruction
        write_results(tmp_path, f"e{index}", 1, raw, classification_metrics(0.5))
    _, markdown = read_aggregate(tmp_path)
    rows = tables(markdown)[CLASSIFICATION]
    # sorted by value: "Classify..." before "Short."; the order sorts the full text, the cell shows the cut one
    assert [row["prompting.instruction"] for row in rows] == [setting_text(long), "Short."]


def test_the_report_knows_exactly_the_states_the_runner_writes(tmp_path):
    """One enum (RunState) for the writer and the reader: its failed state is a failure, every other
    unfinished state is missing; a state no runner writes (e.g. "timeout") is shown as missing by name."""
    from sft.results.states import FAILED_STATES, RunState

    for index, state in enumerate([*RunState, "timeout"]):
        value = state.value if isinstance(state, RunState) else state
        write_status(tmp_path, f"run{index}", 1, value, log_tail="x\n")
    collected = collect(tmp_path)
    assert {f["state"] for f in collected.failures} == {state.value for state in FAILED_STATES} == {"failed"}
    missing = {m["state"] for m in collected.missing}
    assert missing == {"running", "interrupted", "timeout", "done (no results.json)"}


def test_compute_time_counts_a_shared_training_once(tmp_path):
    raw = classification_config(8, init=True)
    key = parse_config(raw).training_key()
    for name, source, train, total in (("trains", "trained", 10.0, 12.0), ("reuses1", "reused", None, 2.0),
                                       ("reuses2", "reused", None, 3.0)):  # fmt: skip
        path = write_results(tmp_path, name, 1, raw, classification_metrics(0.5))
        stored = json.loads(path.read_text())
        stored |= {"training_key": key, "adapter_source": source}
        stored["timings"] = {"train_seconds": train, "inference_seconds": 1.0, "total_seconds": total}
        path.write_text(json.dumps(stored))
    json_path, markdown_path = aggregate(tmp_path, ReportOptions(plots=frozenset()))
    document = json.loads(json_path.read_text())
    assert document["summary"]["compute_seconds"] == pytest.approx(17.0)  # the training's 10 s once
    assert (document["summary"]["trainings"], document["summary"]["adapters_reused"]) == (1, 2)
    assert {row["adapter_source"] for row in document["rows"]} == {"trained", "reused"}
    assert all(row["training_key"] == key for row in document["rows"])
    assert "- Trainings: 1 in finished runs; 2 run(s) reused a shared adapter" in markdown_path.read_text()
