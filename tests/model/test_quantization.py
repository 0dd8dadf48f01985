"""Quantized models: dequantization of bitsandbytes 4-bit (nf4, fp4) and int8 layers loaded on CPU, AWQ and
GPTQ unpacking against a packer written here, initializers on a quantized tiny model, clear errors for
quantization config classes and backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.lora import BNB, TARGETS, distance, logits, projector, rank_r_part, reference_svd, with_lora

from sft.config import ConfigError, ModelConfig
from sft.model.initialization.apply import apply_initializer, lora_layers
from sft.model.initialization.dequantize import AWQ_ORDER, dequantize_weight, unpack_awq, unpack_gptq
from sft.model.loading import load_model
from sft.model.quantization import BACKENDS, quantization_problems

# relative Frobenius error of the stored weight against the float checkpoint, measured: nf4 0.09, fp4 0.12, int8 0.007
TOLERANCE = {"nf4": 0.12, "fp4": 0.15, "int8": 0.01}


def load_quantized(path, kind: str):
    config = ModelConfig(name=str(path), quantization={"config_class": "BitsAndBytesConfig", "args": BNB[kind]})
    return load_model(config)


@pytest.fixture(scope="module")
def float_llama(tiny_llama):
    return load_model(ModelConfig(name=str(tiny_llama)))


@pytest.mark.parametrize("kind", list(BNB))
def test_bitsandbytes_weights_dequantize_to_what_the_layer_computes(tiny_llama, float_llama, kind):
    model = load_quantized(tiny_llama, kind)
    expected_class = "Linear8bitLt" if kind == "int8" else "Linear4bit"
    original = dict(float_llama.named_modules())
    checked = 0
    for name, module in model.named_modules():
        if type(module).__name__ != expected_class:
            continue
        weight = dequantize_weight(module)
        reference = original[name].weight.detach()
        assert weight.shape == reference.shape and weight.dtype == torch.float32
        assert (weight - reference).norm() / reference.norm() < TOLERANCE[kind]
        # the dequantized matrix is the one the quantized layer multiplies by
        x = torch.randn(3, weight.shape[1], generator=torch.Generator().manual_seed(0))
        if kind == "int8":
            with torch.no_grad():
                out = module(x).float()
            # LLM.int8 also quantizes the inputs (per row, to int8): a few percent of the output range
            assert (out - x @ weight.t()).abs().max() <= 3e-2 * out.abs().max()
        else:
            # with a gradient to compute, Linear4bit multiplies by the float32 dequantized weight
            out = module(x.clone().requires_grad_(True)).detach()
            assert (out - x @ weight.t()).abs().max() <= 1e-5
            # in inference, bitsandbytes >= 0.49 on an AVX512-BF16 CPU repacks the weight in place and runs a bf16
            # kernel: x, the block scales and the output are each rounded to bf16 (unit roundoff 2^-8), so the
            # error is at most 3 * 2^-8 * |x| |W|^T (measured <= 0.9; the float checkpoint's weight gives >= 6)
            with torch.no_grad():
                out = module(x)
            assert ((out - x @ weight.t()).abs() <= 3 * 2**-8 * (x.abs() @ weight.abs().t())).all()
            # and the repacked layer still dequantizes to W, its block scales rounded to bf16
            assert ((dequantize_weight(module) - weight).abs() <= 2**-8 * weight.abs()).all()
        checked += 1
    assert checked == 2 * len(TARGETS)


@pytest.mark.parametrize("kind", list(BNB))
def test_initializers_on_a_quantized_model(tiny_llama, kind, tmp_path):
    """pca keeps the outputs of the quantized model and spans the top subspace of its dequantized weights;
    pissa's update is the rank-r part of the dequantized weight."""
    model = load_quantized(tiny_llama, kind)
    before = logits(model)
    adapted = with_lora(model)
    apply_initializer(adapted, "pca", cache_folder=tmp_path)
    assert (logits(adapted) - before).abs().max() <= 1e-4
    for _, layer in lora_layers(adapted):
        _, _, vh = reference_svd(dequantize_weight(layer.get_base_layer()))
        a = layer.lora_A["default"].weight.detach().double().numpy()
        assert distance(projector(a), projector(vh[:4])) < 1e-3

    apply_initializer(adapted, "pissa", cache_folder=tmp_path)
    for _, layer in lora_layers(adapted):
        update = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        expected = rank_r_part(dequantize_weight(layer.get_base_layer()), 4)
        assert np.abs(update.detach().double().numpy() - expected).max() < 1e-4 * np.abs(expected).max()


# -- AWQ and GPTQ packing ------------------------------------------------------------------------------------


def to_int32(values: np.ndarray) -> torch.Tensor:
    """Unsigned 32-bit words as the int32 tensors checkpoints store."""
    return torch.from_numpy(values.astype(np.uint32).view(np.int32))


def pack_columns(values: np.ndarray, order) -> torch.Tensor:
    """Pack 4-bit values eight per int32 along the last dimension; nibble i holds column order[i] of its block."""
    rows, cols = values.shape
    packed = np.zeros((rows, cols // 8), dtype=np.uint64)
    for block in range(cols // 8):
        for i, column in enumerate(order):
            packed[:, block] |= values[:, block * 8 + column].astype(np.uint64) << np.uint64(4 * i)
    return to_int32(packed)


def pack_rows(values: np.ndarray) -> torch.Tensor:
    """GPTQ: pack 4-bit values eight per int32 along the first (input) dimension, sequentially."""
    return pack_columns(values.T, range(8)).t().contiguous()


@pytest.fixture
def quantized_matrix():
    rng = np.random.default_rng(0)
    in_features, out_features, group_size = 64, 32, 16
    groups = in_features // group_size
    q = rng.integers(0, 16, size=(in_features, out_features))
    zeros = rng.integers(0, 16, size=(groups, out_features))
    scales = rng.uniform(0.001, 0.05, size=(groups, out_features)).astype(np.float32)
    return q, zeros, scales, group_size


def expected_weight(q, zeros, scales, group_of_row) -> torch.Tensor:
    """W (out, in) = ((q - z) * s)^T, the row group of each input row given."""
    z, s = torch.from_numpy(zeros[group_of_row]), torch.from_numpy(scales[group_of_row])
    return ((torch.from_numpy(q) - z).float() * s).t()


def test_awq_unpacking_recovers_the_matrix_exactly(quantized_matrix):
    q, zeros, scales, group_size = quantized_matrix
    qweight, qzeros = pack_columns(q, AWQ_ORDER), pack_columns(zeros, AWQ_ORDER)
    assert qweight.dtype == torch.int32 and qweight.shape == (64, 4) and (qweight < 0).any()  # sign bit in use
    expected = expected_weight(q, zeros, scales, np.arange(64) // group_size)
    unpacked = unpack_awq(qweight, qzeros, torch.from_numpy(scales))
    assert torch.equal(unpacked, expected)

    # the same through dequantize_weight, on a module laid out like GPT-QModel's AWQ GEMM layer
    layer = torch.nn.Module()
    layer.register_buffer("qweight", qweight)
    layer.register_buffer("qzeros", qzeros)
    layer.register_buffer("scales", torch.from_numpy(scales).half())
    assert torch.allclose(dequantize_weight(layer), expected, rtol=1e-3, atol=0)

    # AWQ's interleaved order matters: sequential packing is read back as a different matrix
    assert not torch.equal(unpack_awq(pack_columns(q, range(8)), qzeros, torch.from_numpy(scales)), expected)


def test_gptq_unpacking_with_act_order_groups(quantized_matrix):
    q, zeros, scales, group_size = quantized_matrix
    g_idx = np.random.default_rng(1).permutation(np.arange(64) // group_size)  # act-order: groups out of order
    layer = torch.nn.Module()
    layer.register_buffer("qweight", pack_rows(q))
    layer.register_buffer("qzeros", pack_columns(zeros, range(8)))
    layer.register_buffer("scales", torch.from_numpy(scales))
    layer.register_buffer("g_idx", torch.from_numpy(g_idx).int())
    assert layer.qweight.shape == (8, 32)
    expected = expected_weight(q, zeros, scales, g_idx)
    assert torch.equal(dequantize_weight(layer), expected)
    # without g_idx, rows belong to consecutive groups
    plain = unpack_gptq(layer.qweight, layer.qzeros, layer.scales)
    assert torch.equal(plain, expected_weight(q, zeros, scales, np.arange(64) // group_size))
    # raw v1 checkpoints store z - 1
    stored_v1 = pack_columns(zeros - 1 + 16 * (zeros == 0), range(8))  # wraps like uint4
    v1 = unpack_gptq(layer.qweight, stored_v1, layer.scales, zero_offset=1)
    ok = zeros[np.arange(64) // group_size].T != 0
    assert torch.equal(v1[torch.from_numpy(ok)], plain[torch.from_numpy(ok)])


# -- quantization config errors ------------------------------------------------------------------------------


def test_unknown_quantization_class_is_found_at_validation():
    config = ModelConfig(name="any", quantization={"config_class": "AwqConfg"})
    [problem] = quantization_problems(config.quantization)
    assert "did you mean 'AwqConfig'?" in problem and "GPTQConfig" in problem


def test_missing_backend_names_the_pip_package(tiny_llama, monkeypatch):
    monkeypatch.setitem(BACKENDS, "BitsAndBytesConfig", [("sft_no_such_backend", "no-such-backend")])
    config = ModelConfig(name=str(tiny_llama), quantization={"config_class": "BitsAndBytesConfig", "args": BNB["nf4"]})
    [problem] = quantization_problems(config.quantization)
    assert problem == (
        "model.quantization: BitsAndBytesConfig needs no-such-backend; run `pip install no-such-backend`"
    )
    with pytest.raises(ConfigError, match="pip install no-such-backend"):
        load_model(config)


def test_gptq_without_gptqmodel_says_what_to_install():
    import importlib.util

    if importlib.util.find_spec("gptqmodel") is not None:
        pytest.skip("gptqmodel is installed here")
    [problem] = quantization_problems(ModelConfig(name="x", quantization={"config_class": "GPTQConfig"}).quantization)
    assert "gptqmodel" in problem and "pip install" in problem


def test_grid_validation_reports_quantization_problems(tmp_path):
    from helpers import classification_config

    from sft.config import parse_config
    from sft.experiment.checks import library_problems

    raw = classification_config(tmp_path, tmp_path)
    raw["model"]["quantization"] = {"config_class": "BitsAndBytesConfg"}
    problems = library_problems({"exp": parse_config(raw)})
    assert len(problems) == 1 and problems[0].startswith("[exp] model.quantization.config_class")
