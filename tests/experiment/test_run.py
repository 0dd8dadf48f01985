"""sft.experiment.run, in process: the files a run leaves, train/predict/evaluate consistency, errors before loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import classification_config, merge, training_sections

import sft.predictors.causal_lm
from sft.config import ConfigError, parse_config
from sft.experiment.run import evaluate, predict, run_experiment, train
from sft.experiment.shared_adapter import adapter_folder
from sft.results.files import read_json, read_jsonl
from sft.results.fingerprint import hash_test_inputs
from sft.results.layout import Run

SEED = 0
LABELS = ["negative", "neutral", "positive"]


def read_split(data: Path, split: str) -> list[dict]:
    return read_jsonl(data / f"{split}.jsonl")


def zero_shot_config(data: Path, model: Path):
    return parse_config(classification_config(data, model))


def few_shot_config(data: Path, model: Path):
    return parse_config(classification_config(data, model, **training_sections(shots=2, epochs=1)))


def check_config_file(folder: Path, config) -> None:
    raw = read_json(folder / "config.json")
    reparsed = parse_config(raw, source=str(folder / "config.json"))
    assert reparsed.config_hash() == config.config_hash()
    assert reparsed == config


def check_classification_rows(rows: list[dict], test: list[dict]) -> None:
    assert len(rows) == len(test)
    for row, example in zip(rows, test):
        assert set(row) == {"text", "reference", "prediction", "probabilities"}
        assert row["text"] == example["text"]
        assert row["reference"] == example["label"]
        assert list(row["probabilities"]) == LABELS
        probabilities = list(row["probabilities"].values())
        assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-9)
        assert all(0 < p < 1 for p in probabilities)
        assert row["prediction"] == max(row["probabilities"], key=row["probabilities"].get)


@pytest.fixture(scope="module")
def zero_shot(tiny_qwen, sentiment_data, tmp_path_factory):
    config = zero_shot_config(sentiment_data, tiny_qwen)
    run = Run("zero-shot", SEED, tmp_path_factory.mktemp("results"))
    results = run_experiment(config, run)
    return config, run, results


@pytest.fixture(scope="module")
def few_shot(tiny_qwen, sentiment_data, tmp_path_factory):
    config = few_shot_config(sentiment_data, tiny_qwen)
    run = Run("few-shot", SEED, tmp_path_factory.mktemp("results"))
    results = run_experiment(config, run)
    return config, run, results


# -- zero-shot -----------------------------------------------------------------------------------------


def test_zero_shot_run_writes_config_predictions_and_results(zero_shot, sentiment_data):
    import transformers

    config, run, results = zero_shot
    folder = run.folder
    assert folder == (run.results_path / "zero-shot" / f"seed-{SEED}").resolve()
    assert {"config.json", "predictions.jsonl", "results.json", "run.log"} <= {p.name for p in folder.iterdir()}
    assert not run.adapter_folder.exists()

    check_config_file(folder, config)

    test = read_split(sentiment_data, "test")
    rows = read_jsonl(folder / "predictions.jsonl")
    check_classification_rows(rows, test)

    stored = read_json(folder / "results.json")
    assert stored == json.loads(json.dumps(results, default=str))
    assert stored["seed"] == SEED
    assert stored["experiment"] == "zero-shot"
    assert stored["config_hash"] == config.config_hash()
    assert stored["config"] == config.resolved()
    assert stored["task_type"] == "classification"
    assert stored["n_test"] == len(test)
    # the report pairs runs by this hash: the one it computes from predictions.jsonl for older results
    assert stored["test_hash"] == hash_test_inputs(rows, config.prompting.input_columns)
    assert stored["n_shots"] == 0
    assert stored["training"] is None
    assert stored["labels"] == LABELS
    timings = stored["timings"]
    assert timings["train_seconds"] is None
    assert 0 <= timings["inference_seconds"] <= timings["total_seconds"]
    # the build that ran (2.14.1+cu130 on a CUDA build, where package metadata says 2.14.1), its CUDA and GPU
    assert stored["versions"]["torch"] == torch.__version__
    assert stored["versions"]["cuda"] == torch.version.cuda
    assert stored["versions"]["gpu"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    assert stored["versions"]["transformers"] == transformers.__version__
    assert "python" in stored["versions"]


def test_zero_shot_metrics_agree_with_the_predictions(zero_shot):
    _, run, results = zero_shot
    rows = read_jsonl(run.folder / "predictions.jsonl")
    metrics = results["metrics"]
    correct = sum(row["prediction"] == row["reference"] for row in rows)
    assert metrics["accuracy"] == pytest.approx(correct / len(rows))
    matrix = metrics["confusion_matrix"]
    assert matrix["labels"] == LABELS
    assert sum(map(sum, matrix["matrix"])) == len(rows)
    assert sum(matrix["matrix"][i][i] for i in range(len(LABELS))) == correct
    for key in ("f1_macro", "mcc", "ece", "balanced_accuracy"):
        assert key in metrics


def test_zero_shot_probabilities_are_the_models_label_scores(zero_shot):
    """Row i holds the softmax of the base model's label log-probabilities for test example i's prompt."""
    from sft.data.prepare import prepare_data
    from sft.data.prompts import PromptBuilder
    from sft.model.loading import load_model, load_tokenizer
    from sft.scoring.label_scoring import label_logprobs

    config, run, _ = zero_shot
    rows = read_jsonl(run.folder / "predictions.jsonl")
    data = prepare_data(config, SEED)
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model)
    builder = PromptBuilder(tokenizer, config.prompting)
    picked = [0, 5, len(rows) - 1]
    prompts = [builder.prompt(data.test[i], []) for i in picked]
    expected = torch.softmax(label_logprobs(model, tokenizer, prompts, LABELS).double(), dim=-1)
    stored = torch.tensor([[rows[i]["probabilities"][label] for label in LABELS] for i in picked], dtype=torch.float64)
    assert (stored - expected).abs().max() <= 1e-5


# -- few-shot ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_few_shot_run_saves_the_adapter_and_training_stats(few_shot, zero_shot, sentiment_data):
    config, run, _ = few_shot
    folder = adapter_folder(config, run)  # the shared adapter of its training key and seed
    assert (folder / "adapter_config.json").is_file()
    assert any(folder.glob("adapter_model.*"))
    check_config_file(run.folder, config)

    stored = read_json(run.folder / "results.json")
    training = stored["training"]
    assert training["train_examples"] == 2 * len(LABELS)
    assert math.isfinite(training["train_loss"])
    assert training["train_steps"] >= 1
    assert stored["n_shots"] == 2 * len(LABELS)
    assert stored["timings"]["train_seconds"] is not None
    assert 0 < stored["timings"]["train_seconds"] <= stored["timings"]["total_seconds"]
    assert stored["config_hash"] == config.config_hash() != zero_shot[0].config_hash()

    rows = read_jsonl(run.folder / "predictions.jsonl")
    check_classification_rows(rows, read_split(sentiment_data, "test"))
    # the adapter changed the model: its probabilities are not the zero-shot ones
    zero_rows = read_jsonl(zero_shot[1].folder / "predictions.jsonl")
    difference = max(
        abs(row["probabilities"][label] - zero["probabilities"][label])
        for row, zero in zip(rows, zero_rows)
        for label in LABELS
    )
    assert difference > 1e-4


@pytest.mark.parametrize("command", [predict, evaluate])
def test_few_shot_predict_without_an_adapter_asks_to_train_first(
    command, tiny_qwen, sentiment_data, tmp_path, monkeypatch
):
    def no_loading(*args, **kwargs):
        pytest.fail("no model may be loaded when there is no adapter")

    monkeypatch.setattr(sft.predictors.causal_lm, "load_model", no_loading)  # where the label-scoring predictor loads
    config = few_shot_config(sentiment_data, tiny_qwen)
    run = Run("few-shot", SEED, tmp_path)
    with pytest.raises(ConfigError) as error:
        command(config, run)
    message = str(error.value)
    assert "run `train`" in message
    assert str(run.adapter_folder) in message
    assert not (run.folder / "predictions.jsonl").exists()
    assert not (run.folder / "results.json").exists()


@pytest.mark.slow
def test_train_then_evaluate_matches_run_experiment(few_shot, tiny_qwen, sentiment_data, tmp_path):
    config, reference_run, reference = few_shot
    run = Run("few-shot", SEED, tmp_path)
    adapter = train(config, run)
    assert Path(adapter) == adapter_folder(config, run)
    assert (Path(adapter) / "adapter_config.json").is_file()
    assert not (run.folder / "results.json").exists()
    check_config_file(run.folder, config)

    results = evaluate(config, run)
    rows = read_jsonl(run.folder / "predictions.jsonl")
    expected_rows = read_jsonl(reference_run.folder / "predictions.jsonl")
    assert [row["prediction"] for row in rows] == [row["prediction"] for row in expected_rows]
    for row, expected in zip(rows, expected_rows):
        assert {k: v for k, v in row.items() if k != "probabilities"} == {
            k: v for k, v in expected.items() if k != "probabilities"
        }
        for label in LABELS:
            assert row["probabilities"][label] == pytest.approx(expected["probabilities"][label], abs=1e-5)
    assert results["metrics"]["accuracy"] == pytest.approx(reference["metrics"]["accuracy"])
    assert results["config_hash"] == reference["config_hash"]
    assert read_json(run.folder / "results.json")["n_test"] == len(rows)


def same_probabilities(rows: list[dict], expected: list[dict]) -> bool:
    return len(rows) == len(expected) and all(
        abs(row["probabilities"][label] - other["probabilities"][label]) <= 1e-5
        for row, other in zip(rows, expected)
        for label in LABELS
    )


@pytest.mark.slow
def test_model_adapter_is_applied_by_predict_and_by_a_zero_shot_run(
    few_shot, zero_shot, tiny_qwen, sentiment_data, tmp_path
):
    """A trained adapter given as model.adapter (from another results folder) gives the trained model's scores."""
    reference_config, reference_run, _ = few_shot
    expected = read_jsonl(reference_run.folder / "predictions.jsonl")
    assert not same_probabilities(read_jsonl(zero_shot[1].folder / "predictions.jsonl"), expected)
    adapter = {"model": {"name": str(tiny_qwen), "adapter": str(adapter_folder(reference_config, reference_run))}}
    few_with_adapter = parse_config(
        merge(classification_config(sentiment_data, tiny_qwen, **training_sections(shots=2, epochs=1)), adapter)
    )
    run = Run("predict-only", SEED, tmp_path)
    path = predict(few_with_adapter, run)
    assert path == run.folder / "predictions.jsonl"
    assert not (run.folder / "results.json").exists()
    assert same_probabilities(read_jsonl(path), expected)

    zero_with_adapter = parse_config(merge(classification_config(sentiment_data, tiny_qwen), adapter))
    run = Run("zero-shot-with-adapter", SEED, tmp_path)
    run_experiment(zero_with_adapter, run)
    assert not run.adapter_folder.exists()
    assert same_probabilities(read_jsonl(run.folder / "predictions.jsonl"), expected)


# -- generation ----------------------------------------------------------------------------------------


def generation_config(data: Path, model: Path):
    return parse_config(
        {
            "dataset": {"path": str(data), "task_type": "generation", "shots": 0},
            "model": {"name": str(model)},
            "prompting": {
                "instruction": "Translate English to German.",
                "input_columns": ["en"],
                "output_column": "de",
            },
            "inference": {"batch_size": 4, "generation_args": {"max_new_tokens": 4}},
        }
    )


def test_generation_run_writes_text_metrics(tiny_qwen, translation_data, tmp_path):
    from sft.data.prompts import PromptBuilder
    from sft.model.loading import load_model, load_tokenizer
    from sft.predictors.generation import generate

    config = generation_config(translation_data, tiny_qwen)
    run = Run("translation", SEED, tmp_path)
    results = run_experiment(config, run)
    check_config_file(run.folder, config)

    metrics = read_json(run.folder / "results.json")["metrics"]
    assert metrics == results["metrics"]
    for key in ("bleu", "chrf", "rouge1", "rouge2", "rougeL"):
        assert isinstance(metrics[key], float)
        assert 0.0 <= metrics[key] <= 100.0
    assert results["task_type"] == "generation"
    assert results["labels"] is None

    test = read_split(translation_data, "test")
    rows = read_jsonl(run.folder / "predictions.jsonl")
    assert len(rows) == len(test)
    for row, example in zip(rows, test):
        assert set(row) == {"en", "reference", "prediction"}
        assert row["en"] == example["en"]
        assert row["reference"] == example["de"]
        assert isinstance(row["prediction"], str)
    assert metrics["exact_match"] == pytest.approx(
        sum(row["prediction"] == row["reference"] for row in rows) / len(rows)
    )

    # the predictions are the model's greedy continuations of the test prompts
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model)
    builder = PromptBuilder(tokenizer, config.prompting)
    prompts = [builder.prompt(example, []) for example in test[:3]]
    assert generate(model, tokenizer, prompts, 1, {"max_new_tokens": 4}) == [row["prediction"] for row in rows[:3]]


# -- invalid data --------------------------------------------------------------------------------------


def test_invalid_dataset_fails_before_loading_and_leaves_files_untouched(
    tiny_qwen, sentiment_data, tmp_path, monkeypatch
):
    def no_loading(*args, **kwargs):
        pytest.fail("a model or tokenizer was loaded although the data is invalid")

    monkeypatch.setattr(sft.predictors.causal_lm, "load_model", no_loading)  # where the label-scoring predictor loads
    monkeypatch.setattr(sft.predictors.causal_lm, "load_tokenizer", no_loading)

    run = Run("broken", SEED, tmp_path)
    run.folder.mkdir(parents=True)
    previous = {
        "config.json": '{"previous": "config"}\n',
        "predictions.jsonl": '{"previous": "prediction"}\n',
        "results.json": '{"previous": "results"}\n',
        "adapter/adapter_config.json": '{"previous": "adapter"}\n',
    }
    for name, text in previous.items():
        (run.folder / name).parent.mkdir(parents=True, exist_ok=True)
        (run.folder / name).write_text(text, encoding="utf-8")
    (run.folder / "run.log").write_text("earlier log line\n", encoding="utf-8")

    zero = parse_config(classification_config(sentiment_data, tiny_qwen, prompting={"input_columns": ["body"]}))
    few = parse_config(
        merge(
            classification_config(sentiment_data, tiny_qwen, **training_sections(shots=2, epochs=1)),
            {"prompting": zero.prompting.model_dump()},
        )
    )
    calls = [(run_experiment, zero), (predict, zero), (evaluate, zero), (train, few), (run_experiment, few)]
    for command, config in calls:
        with pytest.raises(ConfigError) as error:
            command(config, run)
        message = str(error.value)
        assert "'body'" in message, f"{command.__name__}: {message}"
        assert "prompting" in message

    for name, text in previous.items():
        assert (run.folder / name).read_text(encoding="utf-8") == text, f"{name} was changed"
    assert sorted(p.relative_to(run.folder).as_posix() for p in run.folder.rglob("*") if p.is_file()) == sorted(
        [*previous, "run.log"]
    )
    assert (run.folder / "run.log").read_text(encoding="utf-8").startswith("earlier log line\n")
