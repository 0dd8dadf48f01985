"""PEFT's data-driven initializations (EVA, CorDA) as sft runs them: each is deterministic, computed once and
then read from the cache (leaving the global RNG as it found it), reads the training shots only (the
trainer's own token ids; never a validation or test row), is recorded in results.json, and the run's export
serves the run's probabilities (CorDA rewrites the base weights, so its adapter is saved converted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import classification_config, merge, training_sections

from sft.results.files import read_json, read_jsonl
from sft.synthetic import sentiment_examples, write_splits

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4
TARGETS = ["q_proj", "v_proj"]
# Rows only validation and test hold: an initialization that read them would show these words.
MARKERS = {"validation": "VALIDATIONONLY", "test": "TESTONLY"}


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def _batches(sizes: list[int], length: int = 12) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(5, 250, (size, length), generator=generator)} for size in sizes]


def _lora_factors(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items() if "lora_" in name}


def test_eva_and_corda_are_deterministic_cached_and_leave_the_rng_alone(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model

    from sft.model.initialization.data_driven import corda, eva

    key = {"model": str(tiny_llama), "revision": None, "quantization": None}

    def eva_run(cache):
        config = LoraConfig(r=2, target_modules=TARGETS, init_lora_weights="eva", eva_config={"tau": 0.8})
        model = get_peft_model(_load(tiny_llama), config)
        state = torch.get_rng_state()
        record = eva(model, _batches([4, 4, 3]), 11, key, cache)
        assert torch.equal(torch.get_rng_state(), state)  # training draws the same numbers either way
        return record, _lora_factors(model)

    def corda_run(cache):
        config = LoraConfig(r=2, target_modules=TARGETS, init_lora_weights="corda", corda_config={})
        base = _load(tiny_llama)
        sequences = [batch["input_ids"][0].tolist() for batch in _batches([1] * 6)]
        before = base(input_ids=torch.tensor(sequences[:2])).logits
        record = corda(base, config, sequences, key, cache)
        adapted = get_peft_model(base, config)
        # the base weights became the residual W - B A: the adapted model starts where the base model was
        assert (adapted(input_ids=torch.tensor(sequences[:2])).logits - before).abs().max() < 1e-4
        return record, _lora_factors(adapted)

    for run in (eva_run, corda_run):
        computed, first = run(tmp_path / "cache")
        cached, second = run(tmp_path / "cache")
        uncached, third = run(None)
        assert (computed["from_cache"], cached["from_cache"], uncached["from_cache"]) == (False, True, False)
        assert computed["layers"] == 2 * 2 and computed["examples"] in (11, 6)
        assert first.keys() == second.keys() == third.keys() and first
        for name in first:
            assert torch.equal(first[name], second[name]) and torch.equal(first[name], third[name]), name
    assert {path.name.split("-")[0] for path in (tmp_path / "cache").iterdir()} == {"eva", "corda"}


def test_eva_says_what_to_change_when_no_batch_has_enough_tokens(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model

    from sft.model.initialization.data_driven import eva

    model = get_peft_model(_load(tiny_llama), LoraConfig(r=8, target_modules=TARGETS, init_lora_weights="eva"))
    with pytest.raises(ValueError, match="per_device_train_batch_size"):
        eva(model, _batches([1], length=4), 1, {}, None)


# -- whole runs: what the pass reads, what results.json records, what the export serves ---------------------------


@pytest.fixture(scope="module")
def marked_data(tmp_path_factory) -> Path:
    """Sentiment splits whose validation and test texts carry a word the training split never has."""
    rows = {"train": sentiment_examples(30, seed=1)}
    for split, seed in (("validation", 2), ("test", 3)):
        rows[split] = [{**row, "text": f"{MARKERS[split]} {row['text']}"} for row in sentiment_examples(12, seed)]
    return write_splits(tmp_path_factory.mktemp("marked"), rows)


RUNS = {"eva": {}, "corda": {}, "eva-head": {"head": "classification"}}


@pytest.fixture(scope="module")
def initialized_runs(tmp_path_factory, marked_data, tiny_qwen, tiny_llama):
    """One run per initialization (model selection on validation on), with every input each pass read."""
    import sft.training.causal_lm
    import sft.training.head
    from sft.data.prepare import prepare_data
    from sft.experiment.checks import validate_grid
    from sft.experiment.run import run_experiment
    from sft.results.layout import Run

    root = tmp_path_factory.mktemp("initialized")
    configs = {}
    for name, model in RUNS.items():
        raw = classification_config(marked_data, tiny_llama if model else tiny_qwen, **training_sections(shots=2))
        raw = merge(raw, {"training": {**raw["training"], "eval_every": 1, "eval_examples": 4}})
        raw["dataset"] = {**raw["dataset"], "max_n_test": 6, "validation_split": "validation"}
        raw["lora"] = {"r": 2, "target_modules": TARGETS, "init_lora_weights": name.removesuffix("-head")}
        raw["model"] = {**raw["model"], **model}
        if name.startswith("eva"):
            raw["lora"]["eva_config"] = {"tau": 0.8}  # settles in a few passes on the tiny model
        configs[name] = raw
    grid = root / "grid.json"
    grid.write_text(json.dumps({"configs": configs}))
    read: dict[str, list] = {}

    def spy(name, function):
        def recording(model, first, *args, **kwargs):
            read[name] = list(args[0] if name == "corda" else first)
            return function(model, first, *args, **kwargs)

        return recording

    folders, shots = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SFT_INIT_CACHE", str(root / "cache"))
        for name, config in validate_grid(grid).items():
            module = sft.training.head if "head" in name else sft.training.causal_lm
            function = "corda" if name == "corda" else "eva"
            patch.setattr(module, function, spy(name, getattr(module, function)))
            run = Run(name, 0, root / "results")
            run_experiment(config, run)
            folders[name] = run.folder
            shots[name] = list(prepare_data(config, 0).shots["text"])
    return folders, read, shots


def _texts(name: str, inputs: list, model_path: Path) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if name == "corda":
        return [tokenizer.decode(ids) for ids in inputs]
    return [tokenizer.decode(ids) for batch in inputs for ids in batch["input_ids"]]


@pytest.mark.parametrize("name", list(RUNS))
def test_the_pass_reads_the_training_shots_only_and_is_recorded(name, initialized_runs, tiny_qwen, tiny_llama):
    folders, read, shots = initialized_runs
    texts = " ".join(_texts(name, read[name], tiny_llama if "head" in name else tiny_qwen))
    assert not any(marker in texts for marker in MARKERS.values())
    assert all(shot in texts for shot in shots[name])
    results = read_json(folders[name] / "results.json")
    record = results["initialization"]
    assert record["method"] == name.removesuffix("-head") and record["examples"] == len(shots[name]) == 6
    assert record["from_cache"] is False and record["layers"] > 0
    assert "initialization" not in results["training"]


def test_corda_reads_the_token_ids_the_trainer_trains_on(initialized_runs):
    _, read, _ = initialized_runs
    # the same shots and prompts: the trainer's padding-free rows (EVA's batches) are CorDA's sequences end to end
    trainer_ids = torch.cat([batch["input_ids"].reshape(-1) for batch in read["eva"]]).tolist()
    assert trainer_ids == [token for ids in read["corda"] for token in ids]


@pytest.mark.parametrize(("name", "merge"), [(name, True) for name in RUNS] + [("corda", False)])
def test_the_export_serves_the_runs_probabilities(name, merge, initialized_runs, tmp_path):
    """Merged, and unmerged for CorDA: its adapter was saved converted onto the original weights."""
    from sft.serving.api import load_export
    from sft.serving.export import export_run

    folders, _, _ = initialized_runs
    model = load_export(export_run(folders[name], tmp_path / "export", merge=merge))
    rows = read_jsonl(folders[name] / "predictions.jsonl")
    predicted = model.predict([{column: row[column] for column in model.input_columns} for row in rows])
    for mine, theirs in zip(predicted, rows, strict=True):
        assert mine["prediction"] == theirs["prediction"]
        for label, probability in theirs["probabilities"].items():
            assert mine["probabilities"][label] == pytest.approx(probability, abs=TOLERANCE), name
