"""Shared training, in process: experiments with one training key train once and reuse the stored adapter,
with predictions identical to independent runs (`share_training=False`); the single commands find it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import classification_config, merge, training_sections

from sft.config import parse_config
from sft.experiment.run import evaluate, run_experiment, train
from sft.experiment.shared_adapter import adapter_folder
from sft.results.adapters import READY, STORE, SharedAdapter
from sft.results.files import read_json, read_jsonl
from sft.results.layout import Run
from sft.results.run_record import REUSED, TRAINED

pytestmark = pytest.mark.slow
SEED = 0


def configs(data: Path, model: Path) -> dict:
    """Two experiments with one training: they differ in inference settings only."""
    base = merge(
        classification_config(data, model, **training_sections(shots=2)), {"dataset": {"shots": 2, "max_n_test": 6}}
    )
    return {
        "sum": parse_config(base),
        "mean": parse_config(merge(base, {"inference": {"batch_size": 8, "normalization": "mean"}})),
    }


@pytest.fixture(scope="module")
def grids(tiny_qwen, sentiment_data, tmp_path_factory):
    """The same two experiments run with sharing and without: {shared?: (results folder, {name: results})}."""
    found = {}
    for share in (True, False):
        root = tmp_path_factory.mktemp("shared" if share else "independent")
        found[share] = (
            root,
            {
                name: run_experiment(config, Run(name, SEED, root, share))
                for name, config in configs(sentiment_data, tiny_qwen).items()
            },
        )
    return found


def test_one_training_serves_both_experiments(grids, tiny_qwen, sentiment_data):
    root, results = grids[True]
    experiments = configs(sentiment_data, tiny_qwen)
    key = experiments["sum"].training_key()
    assert (
        key == experiments["mean"].training_key()
        and experiments["sum"].config_hash() != experiments["mean"].config_hash()
    )
    assert [results[name]["adapter_source"] for name in ("sum", "mean")] == [TRAINED, REUSED]
    assert all(results[name]["training_key"] == key for name in results)
    assert results["mean"]["timings"]["train_seconds"] is None  # counted once, in the run that trained
    assert results["mean"]["training"] == results["sum"]["training"]  # the training's statistics, from the store
    shared = SharedAdapter(root, key, SEED)
    assert results["sum"]["adapter"] == results["mean"]["adapter"] == f"{STORE}/{key}/seed-{SEED}/adapter"
    assert read_json(shared.folder / READY)["trained_by"] == "sum"
    assert [path.name for path in (root / STORE).iterdir()] == [key]
    assert not any((root / name / f"seed-{SEED}" / "adapter").exists() for name in results)


def test_sharing_changes_no_prediction(grids):
    (shared_root, shared), (own_root, own) = grids[True], grids[False]
    for name in shared:
        rows = read_jsonl(shared_root / name / f"seed-{SEED}" / "predictions.jsonl")
        assert rows == read_jsonl(own_root / name / f"seed-{SEED}" / "predictions.jsonl")
        assert shared[name]["metrics"] == own[name]["metrics"]
        assert own[name]["adapter_source"] == TRAINED
    assert not (own_root / STORE).exists()
    assert all((own_root / name / f"seed-{SEED}" / "adapter" / "adapter_config.json").is_file() for name in own)


def test_single_commands_find_the_shared_adapter(grids, tiny_qwen, sentiment_data):
    root = grids[True][0]
    config = configs(sentiment_data, tiny_qwen)["sum"]
    run = Run("by-hand", SEED, root)
    shared = SharedAdapter(root, config.training_key(), SEED)
    published = {path: path.stat().st_mtime_ns for path in shared.folder.rglob("*")}
    assert train(config, run) == adapter_folder(config, run) == shared.adapter_folder
    assert {path: path.stat().st_mtime_ns for path in shared.folder.rglob("*")} == published  # nothing retrained
    evaluated = evaluate(config, run)
    assert evaluated["adapter_source"] == REUSED
    assert read_jsonl(run.folder / "predictions.jsonl") == read_jsonl(
        root / "sum" / f"seed-{SEED}" / "predictions.jsonl"
    )
