"""Finished runs of every task and mode on the tiny models, their exports, and a real `serve` process.

Each run is as small as a run gets (two shots per label, one epoch, a dozen test examples); what the
tests compare is the export's probabilities with the run's predictions.jsonl, which does not need a
good model.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, classification_config, merge, multilabel_examples, training_sections

TWO_COLUMNS = {
    "input_columns": ["title", "text"],
    "input_template": "Title: {title}\nReview: {text}",
}


def _with_titles(examples: list[dict]) -> list[dict]:
    return [{"title": f"Review {index}", **example} for index, example in enumerate(examples)]


@pytest.fixture(scope="session")
def titled_multilabel_data(assets) -> Path:
    """Multilabel reviews with two input columns (a title and the text)."""
    from sft.synthetic import write_splits

    return write_splits(
        assets / "titled-multilabel",
        {
            "train": _with_titles(multilabel_examples(45, seed=1)),
            "validation": _with_titles(multilabel_examples(12, seed=2)),
            "test": _with_titles(multilabel_examples(10, seed=3)),
        },
    )


def _run(raw: dict, name: str, root: Path) -> Path:
    from sft.config import parse_config
    from sft.experiment.run import run_experiment
    from sft.results.layout import Run

    run = Run(name, 0, root)
    run_experiment(parse_config(raw), run)
    return run.folder


def _multilabel(data: Path, base: Path, **sections: dict) -> dict:
    raw = {
        "dataset": {"path": str(data), "task_type": "multilabel", "validation_split": "validation"},
        "model": {"name": str(base)},
        "prompting": {"instruction": "Which sentiments does the review express?", "output_column": "labels"}
        | TWO_COLUMNS,
        "inference": {"batch_size": 8, "thresholds": "per_label"},
    }
    return merge(raw, sections)


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_qwen, tiny_llama, sentiment_data, translation_data, titled_multilabel_data) -> dict:
    """name -> finished run folder, one per task and mode."""
    root = tmp_path_factory.mktemp("serving-results")
    trained = training_sections(shots=2, epochs=1)
    classification = merge(
        classification_config(sentiment_data, tiny_qwen, **trained),
        {
            "inference": {
                "batch_size": 8,
                "icl_examples": 1,
                "icl_fixed": True,
                "calibration_args": {"calibration_fn": "contextual"},
            }
        },
    )
    head = merge(
        classification_config(sentiment_data, tiny_llama, **trained),
        {"model": {"name": str(tiny_llama), "head": "classification"}},
    )
    generation = {
        "dataset": {"path": str(translation_data), "task_type": "generation", "max_n_test": 4},
        "model": {"name": str(tiny_qwen)},
        "prompting": {"instruction": "Translate to German.", "input_columns": ["en"], "output_column": "de"},
        "inference": {"batch_size": 4, "generation_args": {"max_new_tokens": 4}},
    }
    head_multilabel = _multilabel(
        titled_multilabel_data, tiny_llama, model={"name": str(tiny_llama), "head": "classification"}, **trained
    )
    head_multilabel["inference"]["thresholds"] = "global"
    configs = {
        "classification": classification,
        "classification-head": head,
        "multilabel": _multilabel(titled_multilabel_data, tiny_qwen),
        "multilabel-head": head_multilabel,
        "generation": generation,
    }
    return {name: _run(raw, name, root) for name, raw in configs.items()}


@pytest.fixture(scope="session")
def exports(runs, tmp_path_factory) -> dict:
    """name -> merged export folder of each run."""
    from sft.serving.export import export_run

    root = tmp_path_factory.mktemp("exports")
    return {name: export_run(folder, root / name) for name, folder in runs.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(export: Path, log: Path, *options: str) -> tuple[subprocess.Popen, str, Path]:
    """`sft.cli serve` as a real process on a free port, its output in `log`."""
    port = free_port()
    command = [sys.executable, "-m", "sft.cli", "serve", str(export), "--host", "127.0.0.1", "--port", str(port)]
    # a file, not a pipe: a pipe nobody reads would block the server once its buffer filled
    with open(log, "wb") as output:
        process = subprocess.Popen([*command, *options], cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", log


def wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    """Return once /health answers; fail if the server exits, skip if it never answers."""
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    stop(process)
    pytest.skip("the server did not answer /health within 180 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def servers(exports, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Two real servers, started together: the classification export with small request limits
    ("one-column") and the multilabel export, whose inputs have a title and a text ("two-column")."""
    logs = tmp_path_factory.mktemp("server-logs")
    launched = {
        "one-column": launch(exports["classification"], logs / "one.log", "--max-inputs", "50", "--max-bytes", "20000"),
        "two-column": launch(exports["multilabel"], logs / "two.log"),
    }
    try:
        for process, url, log in launched.values():
            wait_until_healthy(process, url, log)
        yield {name: url for name, (_, url, _) in launched.items()}
    finally:
        for process, _, _ in launched.values():
            if process.poll() is None:
                stop(process)


@pytest.fixture(scope="session")
def server(servers) -> str:
    return servers["one-column"]


@pytest.fixture(scope="session")
def two_column_server(servers) -> str:
    return servers["two-column"]
