"""A grid with every adapter method as its axis, run on a tiny model: each run trains its method (model
selection on validation on, so each method's best adapter is kept and restored through PEFT's state
dict), records its size and speed, and its export (merged where the method merges, the adapter
otherwise) serves the run's own probabilities within 1e-4. Head mode runs a few methods of each kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import classification_config, merge, training_sections

from sft.config.adapters import ADAPTERS, adapter_traits
from sft.results.files import read_json, read_jsonl

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4
HEAD_METHODS = ["loha", "prompt_tuning", "adalora"]
# every method TRL's SFTTrainer can train (prefix tuning is refused, with the reason: sft.config.adapters)
GENERATIVE = [method for method in ADAPTERS if adapter_traits(method).sft_trainer]


def _grid(sentiment_data: Path, tiny_qwen: Path, tiny_llama: Path) -> dict:
    trained = merge(
        training_sections(shots=2, epochs=1),
        {
            "training": {"eval_every": 1, "eval_examples": 6},
            "dataset": {"max_n_test": 6, "validation_split": "validation"},
        },
    )
    configs = {}
    for method in ADAPTERS:
        raw = classification_config(sentiment_data, tiny_qwen, **trained)
        # the shared rank and alpha of `training_sections` belong to some methods only
        raw["lora"] = {"method": method, "target_modules": ["q_proj", "v_proj"]}
        if "target_modules" not in adapter_traits(method).typed:
            del raw["lora"]["target_modules"]
        if method == "ia3":
            raw["lora"]["feedforward_modules"] = []
        configs[method] = raw
    head = {"model": {"name": str(tiny_llama), "head": "classification"}}
    heads = {f"{method}-head": merge(configs[method], head) for method in HEAD_METHODS}
    return {"configs": {**{method: configs[method] for method in GENERATIVE}, **heads}}


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory, sentiment_data, tiny_qwen, tiny_llama) -> dict[str, Path]:
    from sft.experiment.checks import validate_grid
    from sft.experiment.run import run_experiment
    from sft.results.layout import Run

    root = tmp_path_factory.mktemp("methods")
    grid = root / "grid.json"
    grid.write_text(json.dumps(_grid(sentiment_data, tiny_qwen, tiny_llama)))
    configs = validate_grid(grid)
    folders = {}
    for name, config in configs.items():
        run = Run(name, 0, root / "results")
        run_experiment(config, run)
        folders[name] = run.folder
    return folders


@pytest.mark.parametrize("name", [*GENERATIVE, *(f"{method}-head" for method in HEAD_METHODS)])
def test_each_method_trains_and_its_export_serves_the_runs_probabilities(name, method_runs, tmp_path):
    from sft.serving.api import load_export
    from sft.serving.export import export_run
    from sft.serving.manifest import read_manifest

    folder = method_runs[name]
    results = read_json(folder / "results.json")
    training = results["training"]
    assert training["trainable_parameters"] > 0 and training["selection"] is not None
    assert results["adapter_bytes"] > 0 and results["seconds_per_step"] > 0
    exported = export_run(folder, tmp_path / "export")
    method = name.removesuffix("-head")
    assert read_manifest(exported).weights.merged == adapter_traits(method).merges
    model = load_export(exported)
    rows = read_jsonl(folder / "predictions.jsonl")
    predicted = model.predict([{column: row[column] for column in model.input_columns} for row in rows])
    for mine, theirs in zip(predicted, rows, strict=True):
        assert mine["prediction"] == theirs["prediction"]
        for label, probability in theirs["probabilities"].items():
            assert mine["probabilities"][label] == pytest.approx(probability, abs=TOLERANCE), name
