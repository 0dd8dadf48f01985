"""Export and reload: for every task and mode the exported model's predictions equal the run's
predictions.jsonl (probabilities within 1e-4), merged and unmerged exports agree, and a broken
export is refused before any model loads."""

from __future__ import annotations

import json
import shutil

import pytest

from sft.config import ConfigError
from sft.results.files import read_json, read_jsonl

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4


def run_inputs(run_folder, columns) -> tuple[list[dict], list[dict]]:
    rows = read_jsonl(run_folder / "predictions.jsonl")
    return [{column: row[column] for column in columns} for row in rows], rows


def assert_same_predictions(predicted: list[dict], rows: list[dict]) -> None:
    assert len(predicted) == len(rows)
    for mine, theirs in zip(predicted, rows):
        assert mine["prediction"] == theirs["prediction"]
        if "probabilities" in theirs:
            assert list(mine["probabilities"]) == list(theirs["probabilities"])
            for label, probability in theirs["probabilities"].items():
                assert mine["probabilities"][label] == pytest.approx(probability, abs=TOLERANCE)


@pytest.mark.parametrize(
    "name", ["classification", "classification-head", "multilabel", "multilabel-head", "generation"]
)
def test_an_export_predicts_what_its_run_predicted(name, runs, exports):
    from sft.serving.api import load_export

    model = load_export(exports[name])
    inputs, rows = run_inputs(runs[name], model.input_columns)
    assert_same_predictions(model.predict(inputs), rows)


def test_the_manifest_records_what_the_run_fitted(runs, exports):
    from sft.serving.manifest import read_manifest

    results = read_json(runs["classification"] / "results.json")
    manifest = read_manifest(exports["classification"])
    assert manifest.labels == results["labels"]
    assert manifest.calibration == results["calibration"]
    assert manifest.calibration["method"] == "contextual"
    assert manifest.source.config_hash == results["config_hash"]
    assert manifest.source.metrics == results["metrics"]
    assert len(manifest.icl_examples) == 3  # one per label: the run's fixed draw
    assert not manifest.icl_drawn_per_input
    assert manifest.chat_template and "im_start" in manifest.chat_template
    multilabel = read_manifest(exports["multilabel"])
    assert multilabel.thresholds == read_json(runs["multilabel"] / "results.json")["thresholds"]


@pytest.mark.parametrize("name", ["classification", "classification-head"])
def test_merged_and_unmerged_exports_agree(name, runs, exports, tmp_path):
    from sft.serving.api import load_export
    from sft.serving.export import export_run

    unmerged = export_run(runs[name], tmp_path / "unmerged", merge=False)
    assert (unmerged / "adapter" / "adapter_config.json").is_file() and not (unmerged / "model").exists()
    merged_model, unmerged_model = load_export(exports[name]), load_export(unmerged)
    inputs, rows = run_inputs(runs[name], merged_model.input_columns)
    assert_same_predictions(merged_model.predict(inputs), unmerged_model.predict(inputs))
    assert_same_predictions(unmerged_model.predict(inputs), rows)


def test_an_unfinished_run_or_a_used_folder_is_refused(runs, exports, tmp_path):
    from sft.serving.export import export_run

    unfinished = tmp_path / "results" / "x" / "seed-0"
    shutil.copytree(runs["multilabel"], unfinished)
    (unfinished / "results.json").unlink()
    with pytest.raises(ConfigError, match=r"no results\.json"):
        export_run(unfinished, tmp_path / "out")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_run(runs["multilabel"], exports["multilabel"])
    with pytest.raises(ConfigError, match="--no-merge needs an adapter"):
        export_run(runs["multilabel"], tmp_path / "out", merge=False)
    assert not (tmp_path / "out").exists()


def test_a_broken_export_is_refused_with_every_problem(exports, tmp_path):
    from sft.serving.manifest import MANIFEST, read_manifest

    broken = shutil.copytree(exports["classification-head"], tmp_path / "broken")
    (broken / "model" / "model.safetensors").unlink()
    manifest = json.loads((broken / MANIFEST).read_text())
    manifest["labels"] = ["negative", "positive", "neutral"]  # not the head's order
    (broken / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError) as caught:
        read_manifest(broken)
    text = str(caught.value)
    assert "no model" in text and "are not the manifest's" in text
    edited = shutil.copytree(exports["multilabel"], tmp_path / "edited")
    manifest = json.loads((edited / MANIFEST).read_text())
    manifest["config"]["prompting"]["instruction"] = "Something else."
    (edited / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="config_hash"):
        read_manifest(edited)
    manifest["thresholds"] = {"negative": 0.5}
    (edited / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="thresholds are for"):
        read_manifest(edited)
    with pytest.raises(ConfigError, match="not an sft export"):
        read_manifest(tmp_path)
