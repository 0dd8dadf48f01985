"""The training key (`ExperimentConfig.training_key`): changing any setting that decides the trained adapter
changes it; changing any other setting keeps it. Every field of the schema's sections is listed here as
in or out (the `training` section is in as a whole, so fields other changes add to it are in without a
line here), so a field added later to another section fails `test_every_field_is_classified` until
someone decides which side it is on."""

from __future__ import annotations

import pytest
from helpers import merge

from sft.config import TRAINING_KEY_FIELDS, parse_config
from sft.config.schema import (
    DatasetConfig,
    EvaluationConfig,
    InferenceConfig,
    LoraSection,
    ModelConfig,
    PromptingConfig,
)

BASE = {
    "dataset": {"path": "data", "shots": 4, "validation_split": "validation"},
    "model": {"name": "model"},
    "prompting": {"instruction": "Classify.", "input_columns": ["text"], "output_column": "label"},
    "lora": {"r": 4},
    "training": {"trainer_args": {"num_train_epochs": 1}},
}

# field path -> a change of it (merged into BASE, one level deep) that keeps the config valid
INSIDE = {
    "dataset.path": {"dataset": {"path": "other"}},
    "dataset.args": {"dataset": {"args": {"name": "emotion"}}},
    "dataset.task_type": {"dataset": {"task_type": "multilabel"}},
    "dataset.shots": {"dataset": {"shots": 8}},
    "dataset.train_split": {"dataset": {"train_split": "training"}},
    "dataset.test_split": {"dataset": {"test_split": "dev"}},
    "dataset.validation_split": {"dataset": {"validation_split": "val"}},
    "dataset.labels": {"dataset": {"labels": ["no", "yes"]}},
    "model.name": {"model": {"name": "other"}},
    "model.revision": {"model": {"name": "model", "revision": "v2"}},
    "model.trust_remote_code": {"model": {"name": "model", "trust_remote_code": True}},
    "model.dtype": {"model": {"name": "model", "dtype": "bfloat16"}},
    "model.model_args": {"model": {"name": "model", "model_args": {"attn_implementation": "eager"}}},
    "model.quantization": {"model": {"name": "model", "quantization": {"config_class": "BitsAndBytesConfig"}}},
    "model.chat_template": {"model": {"name": "model", "chat_template": "{{ messages }}"}},
    "model.chat_template_from": {"model": {"name": "model", "chat_template_from": "other"}},
    "model.head": {"model": {"name": "model", "head": "classification"}},
    "lora.task_type": {"model": {"name": "model", "head": "classification"}, "lora": {"task_type": "SEQ_CLS"}},
    "lora.method": {"lora": {"method": "loha"}},
    "lora.r": {"lora": {"r": 16}},
    "lora.lora_alpha": {"lora": {"lora_alpha": 32}},
    "lora.lora_dropout": {"lora": {"lora_dropout": 0.1}},
    "lora.target_modules": {"lora": {"target_modules": ["q_proj"]}},
    "lora.bias": {"lora": {"bias": "all"}},
    "lora.init_lora_weights": {"lora": {"init_lora_weights": "gaussian"}},
    "lora.init_args": {"lora": {"init_lora_weights": "umap", "init_args": {"n_neighbors": 5}}},
    "lora.use_rslora": {"lora": {"use_rslora": True}},
    "lora.use_dora": {"lora": {"use_dora": True}},
    "lora.modules_to_save": {"lora": {"modules_to_save": ["lm_head"]}},
    "lora.eva_config": {"lora": {"init_lora_weights": "eva", "eva_config": {"rho": 1.5}}},
    "lora.corda_config": {"lora": {"init_lora_weights": "corda", "corda_config": {"corda_method": "kpm"}}},
    "lora.<a peft extra>": {"lora": {"layers_to_transform": [0]}},
    "prompting.instruction": {"prompting": {"instruction": "Sort it."}},
    "prompting.input_columns": {"prompting": {"input_columns": ["text", "title"]}},
    "prompting.output_column": {"prompting": {"output_column": "gold"}},
    "prompting.input_template": {"prompting": {"input_template": "Text: {text}"}},
    "prompting.max_input_length": {"prompting": {"max_input_length": 64}},
    "prompting.max_output_length": {"prompting": {"max_output_length": 8}},
    "prompting.label_separator": {"prompting": {"label_separator": "; "}},
    "training.icl_examples": {"training": {"icl_examples": 1}},
    "training.trainer_args": {"training": {"trainer_args": {"num_train_epochs": 2}}},
    "training.class_weights": {
        "model": {"name": "model", "head": "classification"},
        "training": {"class_weights": "balanced"},
    },
    "resources.launcher": {"resources": {"launcher": "accelerate"}},
}
OUTSIDE = {
    "dataset.max_n_test": {"dataset": {"max_n_test": 100}},
    "model.device": {"model": {"name": "model", "device": "cpu"}},
    "model.adapter": {"model": {"name": "model", "adapter": "some/adapter"}},
    "inference.icl_examples": {"inference": {"icl_examples": 2}},
    "inference.icl_fixed": {"inference": {"icl_fixed": True}},
    "inference.batch_size": {"inference": {"batch_size": 32}},
    "inference.max_seq_length": {"inference": {"max_seq_length": 256}},
    "inference.thresholds": {"inference": {"thresholds": "per_label"}},
    "inference.threshold_examples": {"inference": {"threshold_examples": 50}},
    "inference.generation_args": {"inference": {"generation_args": {"max_new_tokens": 8}}},
    "inference.normalization": {"inference": {"normalization": "mean"}},
    "inference.calibration_args": {"inference": {"calibration_args": {"calibration_fn": "contextual", "seed": 3}}},
    "evaluation.metrics": {"evaluation": {"metrics": ["accuracy"]}},
    "evaluation.tokenizer_name": {"evaluation": {"tokenizer_name": "gpt2"}},
    "evaluation.bleu_tokenize": {"evaluation": {"bleu_tokenize": "intl"}},
    "evaluation.ece_bins": {"evaluation": {"ece_bins": 15}},
    "evaluation.cluster_column": {"evaluation": {"cluster_column": "document"}},
    "resources.gpus": {"resources": {"gpus": 2}},  # one python process trains whatever it is given
    "resources.num_processes": {"resources": {"num_processes": 4}},  # read by the accelerate launcher only
}
CLASSIFIED = {
    "dataset": DatasetConfig,
    "model": ModelConfig,
    "lora": LoraSection,
    "prompting": PromptingConfig,
    "inference": InferenceConfig,
    "evaluation": EvaluationConfig,
}


def key(changes: dict | None = None) -> str:
    return parse_config(merge(BASE, changes or {})).training_key()


@pytest.mark.parametrize("field", list(INSIDE))
def test_a_field_inside_the_key_changes_it(field):
    assert key(INSIDE[field]) != key()


@pytest.mark.parametrize("field", list(OUTSIDE))
def test_a_field_outside_the_key_keeps_it(field):
    changed = parse_config(merge(BASE, OUTSIDE[field]))
    assert changed.training_key() == key()
    assert changed.config_hash() != parse_config(BASE).config_hash()  # still another experiment


def test_every_field_is_classified():
    listed = {field.split(".")[0] + "." + field.split(".")[1] for field in (*INSIDE, *OUTSIDE)}
    missing = [
        f"{section}.{name}"
        for section, model in CLASSIFIED.items()
        for name in model.model_fields
        if f"{section}.{name}" not in listed
    ]
    assert not missing, f"say whether these decide the trained adapter: {missing}"
    assert TRAINING_KEY_FIELDS["training"] == frozenset()  # the whole section: fields added later are in


def test_data_parallel_resources_are_in_the_key():
    accelerate = {"resources": {"launcher": "accelerate"}}
    assert key(merge(accelerate, {"resources": {"launcher": "accelerate", "num_processes": 4}})) != key(accelerate)
    assert key(merge(accelerate, {"resources": {"launcher": "accelerate", "gpus": 2}})) != key(accelerate)


def test_defaults_spelled_out_keep_the_key_and_zero_shot_has_none():
    spelled = {
        "lora": {"r": 4, "lora_alpha": 16},
        "training": {"trainer_args": {"num_train_epochs": 1}, "icl_examples": 0},
    }
    assert key(spelled) == key()
    assert parse_config(merge(BASE, {"dataset": {"shots": 0}})).training_key() is None
