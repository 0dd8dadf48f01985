"""sft.model.initialization: the pca / pissa / umap initializers checked against their definitions, applied
through PEFT on tiny Llama and Qwen2 models, the safetensors cache, and config validation of the names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import classification_config, merge, training_sections
from helpers.lora import TARGETS, distance, logits, projector, rank_r_part, reference_svd, with_lora

from sft.config import ConfigError, LoraSection, parse_config
from sft.experiment.checks import checked_config
from sft.model.initialization import INITIALIZERS, get_initializer, register_initializer
from sft.model.initialization.apply import apply_initializer, lora_layers
from sft.model.initialization.cache import ENV_VAR, default_folder
from sft.model.initialization.methods import pca, pissa, umap


def linear(out_features: int, in_features: int, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    layer = torch.nn.Linear(in_features, out_features, bias=False)
    torch.nn.init.normal_(layer.weight)
    return layer


# -- the methods on plain layers ---------------------------------------------------------------------------


def test_pca_spans_the_top_right_singular_subspace():
    layer = linear(32, 48)
    factors = pca(layer, 6)
    assert factors["lora_A"].shape == (6, 48) and factors["lora_B"].shape == (32, 6)
    assert (factors["lora_B"] == 0).all()
    a = factors["lora_A"].double().numpy()
    np.testing.assert_allclose(a @ a.T, np.eye(6), atol=1e-5)  # orthonormal rows
    _, _, vh = reference_svd(layer.weight)
    top = projector(a)
    assert distance(top, projector(vh[:6])) < 1e-4
    # the test can tell subspaces apart: the next six directions are far from A's span
    assert distance(top, projector(vh[6:12])) > 0.99


def test_pissa_reconstructs_the_rank_r_part_and_leaves_the_weight():
    layer = linear(40, 24, seed=1)
    before = layer.weight.detach().clone()
    factors = pissa(layer, 5)
    product = (factors["lora_B"] @ factors["lora_A"]).double().numpy()
    expected = rank_r_part(layer.weight, 5)
    assert np.abs(product - expected).max() < 1e-4 * np.abs(expected).max()
    assert torch.equal(layer.weight, before)
    # A = sqrt(S_r) V_r^T: its rows are orthogonal with squared norms S_r
    _, s, _ = reference_svd(layer.weight)
    a = factors["lora_A"].double().numpy()
    np.testing.assert_allclose(np.diag(a @ a.T), s[:5], rtol=1e-4)


def test_rank_above_the_layer_size_is_an_error():
    with pytest.raises(ValueError, match="rank 20 exceeds"):
        pca(linear(16, 12), 20)


def test_randomized_svd_option_is_reproducible_and_close():
    layer = linear(64, 48, seed=2)
    with torch.no_grad():  # a decaying spectrum, as trained weights have
        u, _, vh = torch.linalg.svd(layer.weight, full_matrices=False)
        layer.weight.copy_(u @ torch.diag(0.8 ** torch.arange(48.0)) @ vh)
    first, second = pca(layer, 4, niter=4), pca(layer, 4, niter=4)
    assert torch.equal(first["lora_A"], second["lora_A"])
    exact = projector(pca(layer, 4)["lora_A"].double().numpy())
    assert distance(projector(first["lora_A"].double().numpy()), exact) < 1e-2


def test_umap_embeds_the_input_dimensions_deterministically():
    layer = linear(32, 40, seed=3)
    first, second = umap(layer, 4), umap(layer, 4)
    a = first["lora_A"]
    assert a.shape == (4, 40) and first["lora_B"].shape == (32, 4)
    assert (first["lora_B"] == 0).all()
    assert torch.equal(a, second["lora_A"])  # random_state makes UMAP deterministic
    np.testing.assert_allclose(a.norm(dim=1).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(a.mean(dim=1).numpy(), 0.0, atol=1e-5)
    # the embedding depends on the weight
    assert not torch.allclose(a, umap(linear(32, 40, seed=4), 4)["lora_A"])


# -- registry and config -----------------------------------------------------------------------------------


def test_unknown_initializer_lists_the_available_ones():
    with pytest.raises(KeyError) as error:
        get_initializer("pcaa")
    message = str(error.value)
    assert "did you mean 'pca'?" in message
    for name in ("pca", "pissa", "umap"):
        assert name in message


def test_config_rejects_an_unknown_initializer_before_any_model(tmp_path):
    raw = merge(classification_config(tmp_path, tmp_path / "no-model"), training_sections())
    raw["lora"]["init_lora_weights"] = "pisa"
    with pytest.raises(ConfigError) as error:
        checked_config(raw)
    message = str(error.value)
    assert "lora.init_lora_weights" in message and "did you mean 'pissa'?" in message
    choices = message.split("choose from ")[1]
    for name in ("pca", "pissa", "umap", "pissa_residual", "gaussian", "olora", "pissa_niter_<n>"):
        assert name in choices


def test_a_data_driven_peft_initialization_sft_does_not_run_says_why_it_is_refused():
    with pytest.raises(ValueError, match="needs a pass over training data"):
        LoraSection(init_lora_weights="lora_ga")


@pytest.mark.parametrize(
    ("name", "peft_value"),
    [("pca", True), ("pissa", True), ("umap", True), ("pissa_residual", "pissa"), ("pissa_niter_4", "pissa_niter_4"),
     ("gaussian", "gaussian"), ("olora", "olora"), (True, True), (False, False)],
)  # fmt: skip
def test_peft_receives_its_own_names(name, peft_value):
    lora = LoraSection(init_lora_weights=name)
    kwargs = lora.peft_kwargs()
    assert kwargs["init_lora_weights"] == peft_value
    assert "init_args" not in kwargs
    assert lora.custom_initializer == (name if name in ("pca", "pissa", "umap") else None)


def test_init_args_belong_to_sft_initializers():
    assert LoraSection(init_lora_weights="umap", init_args={"n_neighbors": 5}).init_args == {"n_neighbors": 5}
    with pytest.raises(ValueError, match="init_args is only for sft initializers"):
        LoraSection(init_lora_weights="gaussian", init_args={"n_neighbors": 5})


def test_loftq_needs_its_config():
    with pytest.raises(ValueError, match="loftq_config"):
        LoraSection(init_lora_weights="loftq")


# -- through PEFT on tiny models -----------------------------------------------------------------------------


def load(path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval()


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_zero_b_initializers_leave_the_outputs_unchanged(tiny_model, method, tmp_path):
    model = load(tiny_model)
    before = logits(model)
    targets = TARGETS if method == "pca" else ["q_proj", "v_proj"]  # UMAP is the slow one
    adapted = with_lora(model, targets=targets)
    stats = apply_initializer(adapted, method, cache_folder=tmp_path)
    # layers are found through PEFT: every targeted linear layer of both decoder layers
    assert stats["layers"] == 2 * len(targets) == len(lora_layers(adapted))
    assert all((layer.lora_B["default"].weight == 0).all() for _, layer in lora_layers(adapted))
    assert (logits(adapted) - before).abs().max() <= 1e-5
    if method == "pca":
        for _, layer in lora_layers(adapted):
            _, _, vh = reference_svd(layer.get_base_layer().weight)
            a = layer.lora_A["default"].weight.detach().double().numpy()
            assert distance(projector(a), projector(vh[:4])) < 1e-4


def test_pissa_through_peft_gives_w_r_for_any_alpha(tiny_model, tmp_path):
    model = load(tiny_model)
    before_logits = logits(model)
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    adapted = with_lora(model, r=4, alpha=16)  # scaling 4: B must be divided by it
    apply_initializer(adapted, "pissa", cache_folder=tmp_path)
    for _, layer in lora_layers(adapted):
        scaling = layer.scaling["default"]
        assert scaling == 4
        update = scaling * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        expected = rank_r_part(layer.get_base_layer().weight, 4)
        assert np.abs(update.detach().double().numpy() - expected).max() < 1e-4 * np.abs(expected).max()
    # the base weights are untouched, so the initial outputs change (W + W_r)
    base = adapted.get_base_model()
    for name, p in base.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, weights[name.replace(".base_layer", "")])
    assert (logits(adapted) - before_logits).abs().max() > 1e-3


# -- the cache -----------------------------------------------------------------------------------------------


@pytest.fixture
def counting():
    calls = []

    @register_initializer("counting_pca")
    def counting_pca(base_layer, rank, dtype=None):
        calls.append(rank)
        return pca(base_layer, rank, dtype)

    yield calls
    INITIALIZERS.remove("counting_pca")


def test_cache_returns_identical_tensors_without_recomputing(tiny_llama, tmp_path, counting):
    from safetensors.torch import load_file

    key = {"model": str(tiny_llama), "revision": None, "quantization": None}
    first = with_lora(load(tiny_llama))
    stats = apply_initializer(first, "counting_pca", model_key=key, cache_folder=tmp_path)
    n = stats["layers"]
    assert (stats["computed"], stats["cache_hits"], len(counting)) == (n, 0, n)
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) == n
    assert set(load_file(str(files[0]))) == {"lora_A", "lora_B"}

    second_model = load(tiny_llama)
    second = with_lora(second_model)
    stats = apply_initializer(second, "counting_pca", model_key=key, cache_folder=tmp_path)
    assert (stats["computed"], stats["cache_hits"], len(counting)) == (0, n, n)
    for (_, a), (_, b) in zip(lora_layers(first), lora_layers(second), strict=True):
        assert torch.equal(a.lora_A["default"].weight, b.lora_A["default"].weight)
        assert torch.equal(a.lora_B["default"].weight, b.lora_B["default"].weight)

    # a changed weight under the same model name is recomputed, the others still come from the cache
    third_model = load(tiny_llama)
    with torch.no_grad():
        third_model.model.layers[0].self_attn.q_proj.weight.mul_(2)
    stats = apply_initializer(with_lora(third_model), "counting_pca", model_key=key, cache_folder=tmp_path)
    assert (stats["computed"], stats["cache_hits"]) == (1, n - 1)
    # another rank is another key
    stats = apply_initializer(with_lora(load(tiny_llama), r=2), "counting_pca", model_key=key, cache_folder=tmp_path)
    assert stats["computed"] == n


def test_cache_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "inits"))
    assert default_folder() == tmp_path / "inits"
    monkeypatch.setenv(ENV_VAR, "off")
    assert default_folder() is None
    monkeypatch.delenv(ENV_VAR)
    assert default_folder().parts[-3:] == (".cache", "sft", "initializations")


# -- training uses the initializer ---------------------------------------------------------------------------


@pytest.mark.slow
def test_train_adapter_starts_from_the_named_initializer(tiny_qwen, sentiment_data, tmp_path, monkeypatch):
    """The trainer's LoRA layers hold pissa's factors when training starts (recorded by a trainer subclass)."""
    import trl

    import sft.training.causal_lm
    from sft.data.prepare import prepare_data
    from sft.model.loading import load_model, load_tokenizer
    from sft.tasks import task_for
    from sft.training.causal_lm import train_adapter

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cache"))
    raw = merge(classification_config(sentiment_data, tiny_qwen), training_sections(shots=1))
    raw["lora"]["init_lora_weights"] = "pissa"
    config = parse_config(raw)
    data = prepare_data(config, 0)
    starts = []

    class RecordingSFTTrainer(trl.SFTTrainer):
        def train(self, *args, **kwargs):
            scaled = [layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
                      for _, layer in lora_layers(self.model)]  # fmt: skip
            starts.append([update.detach() for update in scaled])
            starts.append([layer.get_base_layer().weight.detach().clone() for _, layer in lora_layers(self.model)])
            return super().train(*args, **kwargs)

    monkeypatch.setattr(sft.training.causal_lm, "SFTTrainer", RecordingSFTTrainer)  # the name train_adapter calls
    model = load_model(config.model, trainable=True)
    train_adapter(config, task_for(config), data, model, load_tokenizer(config.model), 0, tmp_path / "run")
    updates, weights = starts
    assert len(updates) == 2 * len(TARGETS)
    for update, weight in zip(updates, weights, strict=True):
        expected = rank_r_part(weight, config.lora.r)
        assert np.abs(update.double().numpy() - expected).max() < 1e-4 * np.abs(expected).max()
    assert len(list((tmp_path / "cache").glob("pissa-*.safetensors"))) == len(updates)


@pytest.mark.slow
@pytest.mark.parametrize("init", ["pissa_niter_2", "olora"])
def test_adapters_of_base_rewriting_peft_inits_reload_on_the_original_model(
    init, tiny_qwen, sentiment_data, tmp_path, monkeypatch
):
    """PEFT's PiSSA and OLoRA rewrite the base weights; the saved adapter is converted so that loading it on
    the untouched checkpoint gives the trained model's outputs. (Unconverted, reloading re-runs the init:
    exact for SVD, not for pissa_niter's randomized SVD, which this test catches.)"""
    from sft.data.prepare import prepare_data
    from sft.model.loading import load_model, load_tokenizer
    from sft.tasks import task_for
    from sft.training.causal_lm import train_adapter
    from sft.training.common import save_adapter

    raw = merge(classification_config(sentiment_data, tiny_qwen), training_sections(shots=1))
    raw["lora"]["init_lora_weights"] = init
    config = parse_config(raw)
    tokenizer = load_tokenizer(config.model)
    result = train_adapter(
        config,
        task_for(config),
        prepare_data(config, 0),
        load_model(config.model, trainable=True),
        tokenizer,
        0,
        tmp_path,
    )
    model = result.model
    trained = logits(model)
    folder = save_adapter(model, tokenizer, tmp_path / "adapter", result.initial_adapter)
    reloaded = load_model(config.model, adapter=str(folder))
    assert (logits(reloaded) - trained).abs().max() <= 1e-4
    assert (logits(load_model(config.model)) - trained).abs().max() > 1e-3  # the adapter does something
