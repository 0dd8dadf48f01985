"""sft.experiment.checks: what a config needs beyond its own schema, checked for the whole grid before
anything runs: other packages' registry names, what the experiment's task and predictor accept, and the
argument names passed through to peft, trl and transformers."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from helpers import SOURCE, merge

from sft.config import PEFT_INITIALIZATIONS, ConfigError, parse_config
from sft.experiment.checks import checked_config, config_problems, library_problems, load_grid


def only_problem(raw: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        checked_config(raw, SOURCE)
    messages = caught.value.messages
    assert len(messages) == 1, messages
    return messages[0]


# -- registry names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["gausian", "pissa_niter_", "pissa_niterx", "PISSA", "random"])
def test_unknown_lora_initialization_is_rejected_with_the_choices(trained_raw, value):
    trained_raw["lora"]["init_lora_weights"] = value
    message = only_problem(trained_raw)
    assert message.startswith(f"{SOURCE}: lora.init_lora_weights: unknown initialization {value!r}")
    assert message.endswith(f"(got {json.dumps(value)})")  # as the schema's own errors quote a value
    choices = message.split("choose from ")[1]
    for name in [*PEFT_INITIALIZATIONS, "pissa_niter_<n>", "pca", "pissa", "umap"]:
        assert name in choices


def test_misspelt_lora_initialization_gets_a_suggestion(trained_raw):
    trained_raw["lora"]["init_lora_weights"] = "gausian"
    assert "did you mean 'gaussian'?" in only_problem(trained_raw)


@pytest.mark.parametrize("value", ["pissa_niter_4", "pissa_niter_16", "gaussian", "olora", "pissa", "umap", True])
def test_known_lora_initializations_pass(trained_raw, value):
    trained_raw["lora"]["init_lora_weights"] = value
    assert checked_config(trained_raw, SOURCE).lora.init_lora_weights == value


def test_unknown_calibration_names_the_key_the_choices_and_the_value(raw):
    raw["inference"]["calibration_args"] = {"calibration_fn": "contextal"}
    assert only_problem(raw) == (
        f"{SOURCE}: inference.calibration_args.calibration_fn: unknown calibration 'contextal' (did you mean "
        "'contextual'?); available: adjustable_batch, batch, contextual, domain (got \"contextal\")"
    )


# -- what the task and the predictor accept ------------------------------------------------------------------------

HEAD = {"model": {"name": "models/tiny", "head": "classification"}}
MULTILABEL = {"dataset": {"path": "data", "task_type": "multilabel"}}
GENERATION = {"dataset": {"path": "data", "task_type": "generation"}}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            merge(HEAD, GENERATION),
            "model.head: a classification head cannot generate; use classification or multilabel",
        ),
        (
            merge(MULTILABEL, {"inference": {"calibration_args": {"calibration_fn": "batch"}}}),
            "inference.calibration_args.calibration_fn applies to single-label classification only; remove it",
        ),
        (
            merge(HEAD, {"inference": {"calibration_args": {"calibration_fn": "contextual"}}}),
            "inference.calibration_args.calibration_fn calibrates label scoring, not a classification head; "
            "remove it or model.head",
        ),
        (
            merge(MULTILABEL, {"inference": {"normalization": "mean"}}),
            "inference.normalization applies to label scoring of single-label classification; "
            "remove it (a head and multilabel scoring use their own probabilities)",
        ),
        (
            merge(HEAD, {"inference": {"icl_examples": 1}}),
            "inference.icl_examples: a classification head reads the input alone, without in-context examples; "
            "remove them or model.head",
        ),
        (
            {"training": {"class_weights": "balanced"}},
            "training.class_weights applies to model.head: 'classification' only; remove it",
        ),
        (
            merge(HEAD, {"lora": {"init_lora_weights": "pissa_niter_4"}}),
            "lora.init_lora_weights: 'pissa_niter_4' rewrites the base weights, which head mode cannot save "
            "reloadably; use sft's 'pissa' (base untouched), 'pca', 'umap' or 'gaussian'",
        ),
        (
            {"lora": {"task_type": "SEQ_CLS"}},
            'lora.task_type: SEQ_CLS needs model.head: "classification" (sft sets it in head mode)',
        ),
    ],
    ids=["head-generates", "calibrated-multilabel", "calibrated-head", "normalized-multilabel", "head-icl",
         "class-weights-generative", "head-base-rewrite", "seq-cls-generative"],
)  # fmt: skip
def test_settings_the_task_or_predictor_would_not_use_are_refused(trained_raw, changes, expected):
    raw = copy.deepcopy(trained_raw)
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    config = parse_config(raw, SOURCE)  # the schema alone accepts it
    assert config_problems(config) == [expected]
    assert only_problem(raw) == f"{SOURCE}: {expected}"


@pytest.mark.parametrize(
    "changes",
    [
        HEAD,
        merge(HEAD, MULTILABEL),
        MULTILABEL,
        GENERATION,
        {"inference": {"calibration_args": {"calibration_fn": "batch"}, "normalization": "pmi"}},
        merge(HEAD, {"training": {"class_weights": "balanced"}, "lora": {"init_lora_weights": "pissa"}}),
    ],
    ids=["head", "multilabel-head", "multilabel", "generation", "calibrated-pmi", "weighted-head"],
)
def test_settings_each_predictor_uses_pass(trained_raw, changes):
    raw = copy.deepcopy(trained_raw)
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    assert config_problems(parse_config(raw, SOURCE)) == []


def test_the_grid_reports_schema_errors_and_these_checks_at_once(tmp_path, raw):
    head_generates = merge(raw, merge(HEAD, GENERATION))
    bad_shots = merge(raw, {"dataset": {**raw["dataset"], "shots": -1}})
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"configs": {"a": head_generates, "b": bad_shots}}))
    with pytest.raises(ConfigError) as caught:
        load_grid(grid)
    messages = caught.value.messages
    assert any(
        message.startswith(f"{grid} [a]: model.head: a classification head cannot generate") for message in messages
    )
    assert any(message.startswith(f"{grid} [b]: dataset.shots") for message in messages)


# -- the libraries' argument names ---------------------------------------------------------------------------------


def test_unknown_lora_key_is_reported_with_the_close_peft_argument(trained_raw):
    """`lora` passes extra keys on to peft.LoraConfig; the full validation checks them against peft.

    `rank` is the usual name of LoRA's `r`: a researcher writing it must be pointed at `r`."""
    raw = copy.deepcopy(trained_raw)
    del raw["lora"]["r"]
    raw["lora"]["rank"] = 4
    raw["lora"]["use_rslor"] = True
    problems = library_problems({"exp": parse_config(raw, SOURCE)})

    assert len(problems) == 2, problems
    rank = next(p for p in problems if "lora.rank" in p)
    assert "did you mean 'r'?" in rank
    rslora = next(p for p in problems if "lora.use_rslor" in p)
    assert "did you mean 'use_rslora'?" in rslora


def test_trainer_arguments_are_checked_against_the_predictor_s_trainer(trained_raw):
    raw = merge(trained_raw, {"training": {"trainer_args": {"num_train_epoch": 1}}})
    generative = library_problems({"exp": parse_config(raw, SOURCE)})
    head = library_problems({"exp": parse_config(merge(raw, HEAD), SOURCE)})
    assert generative == ["[exp] training.trainer_args.num_train_epoch: not an argument of trl.SFTConfig "
                          "(did you mean 'num_train_epochs'?)"]  # fmt: skip
    assert head == ["[exp] training.trainer_args.num_train_epoch: not an argument of "
                    "transformers.TrainingArguments (did you mean 'num_train_epochs'?)"]  # fmt: skip


def test_generation_arguments_are_checked_where_they_are_used(raw):
    raw["inference"]["generation_args"] = {"max_new_token": 8}
    assert library_problems({"exp": parse_config(raw, SOURCE)}) == []  # label scoring never generates
    problems = library_problems({"exp": parse_config(merge(raw, GENERATION), SOURCE)})
    assert problems and problems[0].startswith("[exp] inference.generation_args.max_new_token: not an argument")
