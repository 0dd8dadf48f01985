"""sft.report: aggregating results.json files (as sft.experiment writes them) into JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sft.config import parse_config
from sft.report import aggregate, collect, flatten, varying_settings

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
CLASSIFICATION_METRICS = ["accuracy", "f1_macro", "f1_micro", "mcc", "ece"]
GENERATION_METRICS = ["bleu", "chrf", "rougeL", "exact_match"]


def classification_config(shots: int, icl: int = 0, init: Any = True) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "dataset": {"path": "cardiffnlp/tweet_eval", "args": {"name": "sentiment"}, "shots": shots},
        "model": {"name": MODEL},
        "prompting": {"instruction": "Classify the tweet.", "input_columns": ["text"], "output_column": "label"},
        "inference": {"icl_examples": icl},
    }
    if shots:
        raw["lora"] = {"r": 8, "lora_alpha": 16, "init_lora_weights": init}
        raw["training"] = {"trainer_args": {"num_train_epochs": 3, "learning_rate": 1e-4}}
    return raw


def generation_config(max_new_tokens: int) -> dict[str, Any]:
    return {
        "dataset": {"path": "bentrevett/multi30k", "task_type": "generation", "shots": 0},
        "model": {"name": MODEL},
        "prompting": {"instruction": "Translate.", "input_columns": ["en"], "output_column": "de"},
        "inference": {"generation_args": {"max_new_tokens": max_new_tokens}},
    }


def classification_metrics(score: float) -> dict[str, Any]:
    return {
        "accuracy": score,
        "f1_macro": score - 0.1,
        "f1_micro": score,
        "f1_weighted": score - 0.05,
        "precision_macro": score - 0.02,
        "recall_macro": score - 0.03,
        "mcc": score - 0.3,
        "balanced_accuracy": score - 0.03,
        "ece": 0.123456,
        "per_class": {"negative": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 3}},
        "confusion_matrix": {"labels": ["negative", "positive"], "matrix": [[1, 2], [0, 3]]},
    }


def generation_metrics(score: float) -> dict[str, Any]:
    return {"bleu": score, "chrf": score + 10, "rouge1": 0.5, "rouge2": 0.3, "rougeL": 0.45, "exact_match": 0.1}


def write_results(root: Path, experiment: str, seed: int, raw: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """A results.json with the structure of sft.experiment._evaluate."""
    config = parse_config(raw)
    results = {
        "experiment": experiment,
        "seed": seed,
        "config_hash": config.config_hash(),
        "task_type": config.dataset.task_type,
        "metrics": metrics,
        "n_test": 100,
        "n_shots": config.dataset.shots * 3,
        "labels": ["negative", "neutral", "positive"] if config.dataset.task_type == "classification" else None,
        "training": {"train_loss": 1.5} if config.trains else None,
        "timings": {"train_seconds": None, "inference_seconds": 1.25, "total_seconds": 2.5 + seed},
        "versions": {"python": "3.11.0"},
        "finished_at": "2025-01-01T00:00:00+00:00",
        "config": config.resolved(),
    }
    folder = root / experiment / f"seed-{seed}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return folder / "results.json"


CLASSIFICATION_RUNS = {
    "zero-shot_icl0": classification_config(0, icl=0),
    "zero-shot_icl1": classification_config(0, icl=1),
    "shots8_default": classification_config(8, init=True),
    "shots8_gaussian": classification_config(8, init="gaussian"),
}
GENERATION_RUNS = {"translate_short": generation_config(32), "translate_long": generation_config(64)}
SEEDS = (1, 2)


def score(experiment: str, seed: int) -> float:
    return 0.5 + 0.01 * sorted(CLASSIFICATION_RUNS).index(experiment) + 0.001 * seed


@pytest.fixture
def results(tmp_path) -> Path:
    for experiment, raw in CLASSIFICATION_RUNS.items():
        for seed in SEEDS:
            write_results(tmp_path, experiment, seed, raw, classification_metrics(score(experiment, seed)))
    for index, (experiment, raw) in enumerate(GENERATION_RUNS.items()):
        write_results(tmp_path, experiment, 1, raw, generation_metrics(20.0 + index))
    return tmp_path


def read_aggregate(root: Path) -> tuple[dict[str, Any], str]:
    json_path, markdown_path = aggregate(root)
    assert json_path == root / "aggregated_results.json"
    assert markdown_path == root / "aggregated_results.md"
    return json.loads(json_path.read_text(encoding="utf-8")), markdown_path.read_text(encoding="utf-8")


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Each '## section' table of the report as a list of {column: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    section, header = None, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            found[section] = []
            header = None
        elif section and line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
                found[section + " columns"] = [dict.fromkeys(header, "")]
            elif not set(line) <= set("|-: "):
                found[section].append(dict(zip(header, cells)))
    return found


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
    rows = document["rows"]
    expected = sorted([(e, s) for e in CLASSIFICATION_RUNS for s in SEEDS] + [(e, 1) for e in GENERATION_RUNS])
    assert [(row["experiment"], row["seed"]) for row in rows] == expected
    assert document["failures"] == []
    assert document["problems"] == []
    for row in rows:
        assert row["status"] == "done"
        assert row["total_seconds"] == 2.5 + row["seed"]
        if row["experiment"] in CLASSIFICATION_RUNS:
            raw = CLASSIFICATION_RUNS[row["experiment"]]
            assert row["task_type"] == "classification"
            assert row["config_hash"] == parse_config(raw).config_hash()
            assert row["metrics"]["accuracy"] == score(row["experiment"], row["seed"])
            # only scalar metrics are kept
            assert "per_class" not in row["metrics"] and "confusion_matrix" not in row["metrics"]
            assert row["settings"]["dataset.shots"] == raw["dataset"]["shots"]
            assert row["settings"]["model.name"] == MODEL
        else:
            assert row["task_type"] == "generation"
            assert set(row["metrics"]) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match"}


def test_markdown_shows_only_varying_settings_and_main_metrics(results):
    document, markdown = read_aggregate(results)
    found = tables(markdown)
    header = columns(found, "classification")
    assert header[:2] == ["experiment", "seed"]
    assert header[-len(CLASSIFICATION_METRICS) :] == CLASSIFICATION_METRICS
    settings = header[2 : -len(CLASSIFICATION_METRICS)]
    assert set(settings) == {"dataset.shots", "inference.icl_examples", "lora.init_lora_weights"}
    # constant settings, a section only few-shot runs have, and settings varying only in the other task
    for constant in ("model.name", "dataset.path", "prompting.instruction", "lora", "lora.r", "lora.lora_alpha",
                     "training", "training.trainer_args.learning_rate", "inference.generation_args.max_new_tokens",
                     "dataset.task_type", "prompting.output_column"):  # fmt: skip
        assert constant not in header
    assert "dataset.shots" in document["varying_settings"]
    assert "model.name" not in document["varying_settings"]

    rows = {(row["experiment"], row["seed"]): row for row in found["classification"]}
    assert set(rows) == {(e, str(s)) for e in CLASSIFICATION_RUNS for s in SEEDS}
    gaussian = rows[("shots8_gaussian", "2")]
    assert gaussian["dataset.shots"] == "8"
    assert gaussian["lora.init_lora_weights"] == "gaussian"
    assert float(gaussian["accuracy"]) == pytest.approx(round(score("shots8_gaussian", 2), 4))
    assert float(gaussian["ece"]) == pytest.approx(0.1235)
    assert rows[("zero-shot_icl1", "1")]["inference.icl_examples"] == "1"
    assert rows[("zero-shot_icl1", "1")]["lora.init_lora_weights"] == ""  # the run has no adapter
    assert f"{len(document['rows'])} finished run(s), 0 failed run(s)." in markdown


def test_lora_keys_appear_only_when_they_vary_between_adapter_runs(tmp_path):
    write_results(tmp_path, "zero-shot", 1, classification_config(0), classification_metrics(0.4))
    write_results(tmp_path, "shots8", 1, classification_config(8), classification_metrics(0.6))
    write_results(tmp_path, "shots16", 1, classification_config(16), classification_metrics(0.7))
    rows, _, _ = collect(tmp_path)
    assert varying_settings(rows) == ["dataset.shots"]
    _, markdown = read_aggregate(tmp_path)
    assert columns(tables(markdown), "classification") == [
        "experiment",
        "seed",
        "dataset.shots",
        *CLASSIFICATION_METRICS,
    ]


def test_classification_and_generation_go_into_separate_tables(results):
    _, markdown = read_aggregate(results)
    found = tables(markdown)
    assert markdown.index("## classification") < markdown.index("## generation")
    generation_header = columns(found, "generation")
    assert generation_header == ["experiment", "seed", "inference.generation_args.max_new_tokens", *GENERATION_METRICS]
    assert not set(CLASSIFICATION_METRICS) & set(generation_header)
    assert not set(GENERATION_METRICS) & set(columns(found, "classification"))
    assert {row["experiment"] for row in found["generation"]} == set(GENERATION_RUNS)
    assert {row["experiment"] for row in found["classification"]} == set(CLASSIFICATION_RUNS)
    long = next(row for row in found["generation"] if row["experiment"] == "translate_long")
    assert long["inference.generation_args.max_new_tokens"] == "64"
    assert float(long["bleu"]) == pytest.approx(21.0)


def test_only_metrics_present_in_some_run_are_columns(tmp_path):
    metrics = {"accuracy": 0.5, "f1_macro": 0.4}  # evaluation.metrics chose a subset
    write_results(tmp_path, "a", 1, classification_config(0), metrics)
    write_results(tmp_path, "b", 1, classification_config(0, icl=1), metrics)
    _, markdown = read_aggregate(tmp_path)
    assert columns(tables(markdown), "classification") == ["experiment", "seed", "inference.icl_examples",
                                                            "accuracy", "f1_macro"]  # fmt: skip


# -- problems and failures -----------------------------------------------------------------------------


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
    assert any(str(truncated) in problem for problem in document["problems"])
    assert any(str(incomplete) in problem for problem in document["problems"])
    assert "## Unreadable files" in markdown
    unreadable = markdown.split("## Unreadable files", 1)[1]
    assert str(truncated) in unreadable and str(incomplete) in unreadable
    assert "## classification" in markdown and "## generation" in markdown


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
    assert str(broken) in document["problems"][0]
    assert str(broken) in markdown
    assert len(document["rows"]) == len(CLASSIFICATION_RUNS) * len(SEEDS) + len(GENERATION_RUNS)


@pytest.mark.parametrize("content", ['{"state": "fail', "[]", '{"state": "failed"}'])
def test_any_unusable_status_file_is_reported_not_a_crash(results, content):
    status = results / "lost" / "seed-5" / "status.json"
    status.parent.mkdir(parents=True)
    status.write_text(content, encoding="utf-8")
    document, markdown = read_aggregate(results)
    named = any(str(status) in problem for problem in document["problems"])
    listed = [(f.get("experiment"), f.get("seed")) for f in document["failures"]] == [("lost", 5)]
    assert named or listed, document
    assert len(document["rows"]) == len(CLASSIFICATION_RUNS) * len(SEEDS) + len(GENERATION_RUNS)
    assert "## classification" in markdown


def test_failed_runs_have_their_own_section(results):
    status = {
        "experiment": "crashed",
        "seed": 3,
        "state": "failed",
        "exit_code": 137,
        "duration_seconds": 12.5,
        "config_hash": "0" * 64,
        "log": str(results / "crashed" / "seed-3" / "run.log"),
        "log_tail": "Killed\n",
    }
    (results / "crashed" / "seed-3").mkdir(parents=True)
    (results / "crashed" / "seed-3" / "status.json").write_text(json.dumps(status), encoding="utf-8")
    # a finished run's status and a run still going are not failures
    (results / "running" / "seed-1").mkdir(parents=True)
    (results / "running" / "seed-1" / "status.json").write_text(json.dumps({**status, "state": "running"}))
    (results / "shots8_default" / "seed-1" / "status.json").write_text(
        json.dumps({**status, "experiment": "shots8_default", "seed": 1, "state": "done", "exit_code": 0})
    )

    document, markdown = read_aggregate(results)
    assert [(f["experiment"], f["seed"], f["exit_code"]) for f in document["failures"]] == [("crashed", 3, 137)]
    assert "1 failed run(s)" in markdown
    found = tables(markdown)
    assert found["Failed runs"] == [
        {"experiment": "crashed", "seed": "3", "exit code": "137", "log": str(results / "crashed/seed-3/run.log")}
    ]
    assert "crashed" not in {row["experiment"] for row in document["rows"]}
    assert ("shots8_default", 1) in {(row["experiment"], row["seed"]) for row in document["rows"]}


def test_no_failed_section_without_failures(results):
    _, markdown = read_aggregate(results)
    assert "## Failed runs" not in markdown
    assert "## Unreadable files" not in markdown


def test_aggregate_of_a_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        aggregate(tmp_path / "nowhere")
