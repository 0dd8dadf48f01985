"""A structured run end to end on a random-weight model: every answer of the run is valid under
constrained decoding, results.json records the inferred schema, the export carries it in its manifest,
and the exported model answers new inputs with objects that fit it."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_a_structured_run_exports_and_serves_objects_that_fit_its_schema(tiny_qwen, tmp_path):
    from sft.config import parse_config
    from sft.experiment.run import run_experiment
    from sft.results.layout import Run
    from sft.serving.api import load_export
    from sft.serving.export import export_run
    from sft.serving.manifest import read_manifest
    from sft.synthetic import extraction_examples, write_splits
    from sft.tasks.structured import validated

    data = write_splits(tmp_path / "data", {"train": extraction_examples(40, 1), "test": extraction_examples(6, 2)})
    raw = {
        "dataset": {"path": str(data), "task_type": "structured", "shots": 4},
        "model": {"name": str(tiny_qwen)},
        "prompting": {"instruction": "Extract the review.", "input_columns": ["text"], "output_column": "target"},
        "lora": {"r": 2},
        "training": {"trainer_args": {"num_train_epochs": 1, "per_device_train_batch_size": 4}},
        "inference": {"batch_size": 6, "icl_examples": 1, "icl_fixed": True, "generation_args": {"max_new_tokens": 16}},
    }
    run = Run("structured", 0, tmp_path / "results")
    results = run_experiment(parse_config(raw), run)
    assert results["metrics"]["valid"] == 1.0 and "field_f1_macro" in results["metrics"]
    schema = results["output_schema"]
    assert schema["properties"]["sentiment"] == {"enum": ["negative", "neutral", "positive"]}
    rows = [json.loads(line) for line in (run.folder / "predictions.jsonl").read_text().splitlines()]
    assert all(validated(row["generated"], schema) == row["prediction"] for row in rows)

    exported = export_run(run.folder, tmp_path / "export")
    assert read_manifest(exported).output_schema == schema
    answers = load_export(exported).predict(["the phone is awful. 1 stars", {"text": "a lovely watch"}])
    assert [answer["valid"] for answer in answers] == [True, True]
    assert all(validated(json.dumps(answer["prediction"]), schema) is not None for answer in answers)
