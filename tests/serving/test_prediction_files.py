"""`predict --input --output` on CSV, JSON Lines and Parquet: the input's columns kept, one prediction
per row equal to the API's, from an export or from a finished run's config."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from sft.cli import app
from sft.config import ConfigError
from sft.serving.files import read_inputs, write_outputs

PREDICTIONS = [
    {"prediction": ["joy", "fear"], "probabilities": {"joy": 0.9, "fear": 0.7}},
    {"prediction": [], "probabilities": {"joy": 0.1, "fear": 0.2}},
]


def read_any(path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_parquet(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_outputs_keep_the_input_columns_and_add_the_predictions(tmp_path, suffix):
    frame = pd.DataFrame({"id": ["7", "8"], "text": ["a", "b"]})
    written = read_any(write_outputs(tmp_path / f"out{suffix}", frame, PREDICTIONS))
    assert list(written.columns) == ["id", "text", "prediction", "probabilities"]
    assert list(written["text"]) == ["a", "b"]
    first = written["probabilities"][0]
    probabilities = json.loads(first) if isinstance(first, str) else first
    assert probabilities["joy"] == 0.9
    prediction = written["prediction"][0]
    assert list(json.loads(prediction) if isinstance(prediction, str) else prediction) == ["joy", "fear"]


def test_bad_files_are_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="unknown format"):
        read_inputs(tmp_path / "inputs.xlsx", ["text"])
    with pytest.raises(ConfigError, match="no such file"):
        read_inputs(tmp_path / "missing.csv", ["text"])
    (tmp_path / "inputs.csv").write_text("body\nhello\n")
    with pytest.raises(ConfigError, match=r"reads column\(s\) \['text'\]; the file has \['body'\]"):
        read_inputs(tmp_path / "inputs.csv", ["text"])


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_a_file_with_an_export(exports, tmp_path, suffix):
    from sft.serving.api import load_export

    texts = ["Great value.", "Broke after a day.", ""]
    frame = pd.DataFrame({"id": [1, 2, 3], "text": texts})
    source = tmp_path / f"in{suffix}"
    {".csv": lambda: frame.to_csv(source, index=False), ".jsonl": lambda: frame.to_json(source, orient="records",
     lines=True), ".parquet": lambda: frame.to_parquet(source)}[suffix]()  # fmt: skip
    target = tmp_path / f"out{suffix}"
    result = CliRunner().invoke(app, ["predict", str(exports["classification"]), "--input", str(source),
                                      "--output", str(target)])  # fmt: skip
    assert result.exit_code == 0, result.output
    written = read_any(target)
    assert list(written.columns) == ["id", "text", "prediction", "probabilities"]
    wanted = load_export(exports["classification"]).predict(texts)
    for (_, row), theirs in zip(written.iterrows(), wanted):
        probabilities = row["probabilities"]
        probabilities = json.loads(probabilities) if isinstance(probabilities, str) else probabilities
        assert row["prediction"] == theirs["prediction"]
        assert probabilities == pytest.approx(theirs["probabilities"], abs=1e-4)


@pytest.mark.slow
def test_predict_a_file_from_a_finished_run(runs, exports, tmp_path):
    """A config and its results folder give what the run's export gives."""
    from sft.serving.api import load_export

    run = runs["classification"]
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "Great value."}\n{"text": "Broke after a day."}\n')
    target = tmp_path / "out.jsonl"
    args = ["predict", str(run / "config.json"), "--results-path", str(run.parent.parent), "--name", run.parent.name,
            "--random-seed", "0", "--input", str(source), "--output", str(target)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in target.read_text().splitlines()]
    wanted = load_export(exports["classification"]).predict(["Great value.", "Broke after a day."])
    for mine, theirs in zip(written, wanted):
        assert mine["prediction"] == theirs["prediction"]
        assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-4)
    missing = CliRunner().invoke(app, ["predict", str(run / "config.json"), "--input", str(source)])
    assert missing.exit_code == 2 and "together" in missing.output
