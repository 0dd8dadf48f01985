"""`predict --input FILE --output FILE`: predictions for a CSV, JSON Lines or Parquet file of new inputs.

The input needs the model's input columns (labels are not needed); every column it has is kept in the
output, followed by `prediction` and, for classification and multilabel, `probabilities`. The format
of each file follows its suffix. CSV has no nested values, so a label list or the probabilities are
written there as JSON text; JSON Lines and Parquet keep them as lists and objects. The output is
written atomically once every input is predicted, with a progress bar on the way.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import Progress

from sft.config import ConfigError
from sft.results.files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

    from sft.serving.api import ServedModel

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
# Inputs per progress step: a few model batches, so the bar moves without slowing the batches down.
BATCHES_PER_STEP = 4


def file_format(path: Path, option: str) -> str:
    if path.suffix.lower() not in FORMATS:
        raise ConfigError([f"{option} {path}: unknown format; use a .csv, .jsonl or .parquet file"])
    return FORMATS[path.suffix.lower()]


def read_inputs(path: Path, columns: list[str]) -> pd.DataFrame:
    """The table of `path`, every input column present and read as text."""
    import pandas as pd

    kind = file_format(path, "--input")
    if not path.is_file():
        raise ConfigError([f"--input {path}: no such file"])
    try:
        if kind == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError) as error:
        raise ConfigError([f"--input {path}: cannot read it as {kind}: {error}"]) from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ConfigError([f"--input {path}: the model reads column(s) {missing}; the file has {list(frame.columns)}"])
    return frame


def _text(value: Any) -> str:
    """A cell as input text (a missing value is empty, as in training)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def write_outputs(path: Path, frame: pd.DataFrame, predictions: list[dict[str, Any]]) -> Path:
    """The input table with the prediction columns added, in the format of `path`."""
    import pandas as pd

    kind = file_format(path, "--output")
    added = pd.DataFrame(predictions, index=frame.index)
    output = pd.concat([frame.drop(columns=[c for c in added.columns if c in frame.columns]), added], axis=1)
    if kind == "csv":
        for column in added.columns:
            output[column] = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in output[column]]
        return atomic_write_text(path, output.to_csv(index=False))
    if kind == "jsonl":
        return atomic_write_text(path, output.to_json(orient="records", lines=True, force_ascii=False))
    buffer = io.BytesIO()
    output.to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())


def predict_file(model: ServedModel, input_path: Path, output_path: Path) -> Path:
    """Predict every row of `input_path` and write them with their predictions to `output_path`."""
    file_format(output_path, "--output")  # a bad output name fails before any prediction
    columns = model.input_columns
    frame = read_inputs(Path(input_path), columns)
    examples = [{column: _text(row[column]) for column in columns} for row in frame.to_dict("records")]
    step = model.batch_size * BATCHES_PER_STEP
    predictions: list[dict[str, Any]] = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"Predicting {input_path}", total=len(examples))
        for start in range(0, len(examples), step):
            predictions += model.predict(examples[start : start + step])
            progress.advance(task, len(examples[start : start + step]))
    return write_outputs(Path(output_path), frame, predictions)
