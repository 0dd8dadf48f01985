"""`lora.method`: every PEFT method as a config field, its fields checked against its PEFT config class,
and the bad inputs refused with the key path before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import classification_config

from sft.config import ConfigError, parse_config
from sft.config.adapters import ADAPTERS, adapter_traits
from sft.experiment.checks import adapter_problems, config_problems


def config_with(lora: dict, **model):
    raw = classification_config(Path("unused-data"), Path("unused-model"), dataset={"shots": 2})
    raw["lora"] = lora
    raw["model"] = {**raw["model"], **model}
    return raw


def problems_of(lora: dict, **model) -> list[str]:
    try:
        config = parse_config(config_with(lora, **model))
    except ConfigError as error:
        return error.messages
    return config_problems(config) + adapter_problems(config.lora)


def test_lora_stays_the_default_and_keeps_its_hash_and_training_key():
    plain = parse_config(config_with({"r": 4}))
    spelled = parse_config(config_with({"r": 4, "method": "lora"}))
    assert plain.lora.method == "lora"
    assert plain.config_hash() == spelled.config_hash()
    assert plain.training_key() == spelled.training_key()
    assert plain.lora.peft_kwargs() == spelled.lora.peft_kwargs()
    other = parse_config(config_with({"r": 4, "method": "loha"}))
    assert other.training_key() != plain.training_key() and other.config_hash() != plain.config_hash()


@pytest.mark.parametrize("method", [method for method in ADAPTERS if adapter_traits(method).sft_trainer])
def test_every_method_builds_its_peft_config(method):
    assert problems_of({"method": method}) == []


def test_prefix_tuning_is_refused_with_the_reason():
    (generative,) = problems_of({"method": "prefix_tuning"})
    assert generative.startswith("lora.method: prefix tuning cannot be trained") and "KV cache" in generative
    (head,) = problems_of({"method": "prefix_tuning"}, head="classification")
    assert "cannot carry a classification head" in head and "KV cache" in head


def test_an_unknown_method_suggests_the_closest():
    (message,) = problems_of({"method": "lohaa"})
    assert "lora.method" in message and "did you mean 'loha'" in message


def test_a_typed_field_another_method_owns_is_refused():
    (message,) = problems_of({"method": "loha", "lora_alpha": 4})
    assert "lora" in message and "lora_alpha belongs to" in message


def test_an_extra_key_of_another_method_names_its_owner():
    (message,) = problems_of({"method": "vera", "alpha": 4})
    assert message.startswith("lora.alpha: an argument of loha, lokr") and "VeRA" in message


def test_unknown_keys_wrong_types_and_refused_values_have_key_paths():
    assert "did you mean 'alpha'" in problems_of({"method": "loha", "alphaa": 4})[0]
    assert problems_of({"method": "loha", "alpha": "x"})[0].startswith("lora.alpha: 'x' is not a valid int")
    (refused,) = problems_of({"method": "oft", "oft_block_size": 0})
    assert refused.startswith("lora: peft.OFTConfig refuses") and "oft_block_size" in refused


@pytest.mark.parametrize("initializer", ["pca", "pissa", "umap", "olora", "gaussian"])
def test_initializers_are_for_the_low_rank_pair_only(initializer):
    (message,) = problems_of({"method": "ia3", "init_lora_weights": initializer})
    assert "low-rank A/B pair" in message and "method lora, rslora or dora" in message
    assert problems_of({"method": "dora", "init_lora_weights": initializer}) == [] or initializer == "umap"


def test_a_quantized_base_refuses_a_method_without_quantized_layers():
    quantization = {"config_class": "BitsAndBytesConfig", "args": {"load_in_4bit": True}}
    (message,) = [p for p in problems_of({"method": "loha"}, quantization=quantization) if "lora.method" in p]
    assert "quantized" in message and "lora" in message
    assert not [p for p in problems_of({"method": "ia3"}, quantization=quantization) if "lora.method" in p]


def test_traits_say_what_merges_and_what_uses_virtual_tokens():
    assert not adapter_traits("prompt_tuning").merges and adapter_traits("prompt_tuning").virtual_tokens
    assert adapter_traits("loha").merges and not adapter_traits("loha").low_rank_pair
    assert adapter_traits("dora").fixed == {"use_dora": True}
    assert parse_config(config_with({"method": "dora"})).lora.peft_kwargs()["use_dora"] is True


# -- PEFT's data-driven initializations (EVA, CorDA): their settings checked before any model loads --------------


@pytest.mark.parametrize("init", ["eva", "corda"])
def test_data_driven_initializations_reach_peft_with_their_settings(init):
    key = f"{init}_config"
    plain = parse_config(config_with({"init_lora_weights": init}))
    assert config_problems(plain) + adapter_problems(plain.lora) == []
    kwargs = plain.lora.peft_kwargs()
    assert kwargs["init_lora_weights"] == init and kwargs[key] == {}  # PEFT's defaults, without its warning
    assert plain.lora.data_driven == init and plain.lora.rewrites_base == (init == "corda")
    settings = {"rho": 1.5, "tau": 0.9} if init == "eva" else {"corda_method": "kpm"}
    tuned = parse_config(config_with({"init_lora_weights": init, key: settings}))
    assert tuned.lora.peft_kwargs()[key] == settings and adapter_problems(tuned.lora) == []
    assert tuned.training_key() != plain.training_key()  # the settings decide the adapter


def test_eva_and_corda_settings_have_key_paths_and_fixes():
    assert problems_of({"init_lora_weights": "eva", "eva_config": {"rh": 2.0}}) == [
        "lora.eva_config.rh: not an argument of peft.EvaConfig (did you mean 'rho'?)"
    ]
    (wrong,) = problems_of({"init_lora_weights": "eva", "eva_config": {"whiten": "yes"}})
    assert wrong == "lora.eva_config.whiten: 'yes' is not a valid bool"
    (refused,) = problems_of({"init_lora_weights": "eva", "eva_config": {"rho": 0.5}})
    assert refused.startswith("lora.eva_config: peft.EvaConfig refuses") and "rho" in refused
    (method,) = problems_of({"init_lora_weights": "corda", "corda_config": {"corda_method": "xpm"}})
    assert method == "lora.corda_config.corda_method: 'xpm' is not one of 'ipm', 'kpm'"
    (pickled,) = problems_of({"init_lora_weights": "corda", "corda_config": {"cache_file": "c.pt"}})
    assert pickled.startswith("lora.corda_config.cache_file: sft caches") and "remove it" in pickled
    (orphan,) = problems_of({"eva_config": {"rho": 2.0}})
    assert "eva_config configures init_lora_weights 'eva'" in orphan


def test_corda_is_refused_where_peft_cannot_run_it_and_lora_ga_still_is():
    (head,) = problems_of({"init_lora_weights": "corda"}, head="classification")
    assert head.startswith("lora.init_lora_weights: 'corda' rewrites the base weights") and "head mode" in head
    assert problems_of({"init_lora_weights": "eva"}, head="classification") == []
    quantization = {"config_class": "BitsAndBytesConfig", "args": {"load_in_4bit": True}}
    found = problems_of({"init_lora_weights": "corda"}, quantization=quantization)
    (quantized,) = [problem for problem in found if "init_lora_weights" in problem]
    assert quantized.startswith("lora.init_lora_weights: CorDA rewrites the base weights in floating point")
    (other,) = problems_of({"method": "loha", "init_lora_weights": "eva"})
    assert "low-rank A/B pair" in other
    (later,) = problems_of({"init_lora_weights": "lora_ga"})
    assert "needs a pass over training data" in later and "eva and corda" in later
