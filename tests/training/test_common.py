"""sft.training.common: the trainer arguments, sft's defaults and the config's trainer_args over them."""

from __future__ import annotations

from pathlib import Path

from helpers import classification_config, merge, training_sections

from sft.config import parse_config
from sft.training.common import trainer_arguments


def few_shot_config(data: Path, model: Path, **sections):
    return parse_config(merge(classification_config(data, model, **training_sections(shots=2, epochs=1)), sections))


# -- trainer arguments ---------------------------------------------------------------------------------


def test_trainer_argument_defaults(tiny_qwen, sentiment_data, tmp_path):
    from trl import SFTConfig

    config = few_shot_config(sentiment_data, tiny_qwen)
    run_folder = tmp_path / "experiment" / "seed-7"
    args = trainer_arguments(config, run_folder, seed=7)
    assert args["bf16"] is False  # no GPU here: bf16 would be slow or rejected on CPU
    assert args["report_to"] == "none"
    assert Path(args["output_dir"]).resolve().is_relative_to(run_folder.resolve())
    assert Path(args["output_dir"]).resolve() != run_folder.resolve()
    assert args["seed"] == 7
    assert args["data_seed"] == 7
    assert args["save_strategy"] == "no"
    # the user's trainer_args come through
    assert args["num_train_epochs"] == 1
    assert args["learning_rate"] == 1e-3
    # and the result is a valid SFTConfig that keeps our choices
    sft_config = SFTConfig(**args)
    assert sft_config.bf16 is False
    assert sft_config.seed == 7
    assert not sft_config.report_to or sft_config.report_to in ("none", ["none"])


def test_trainer_args_override_defaults(tiny_qwen, sentiment_data, tmp_path):
    config = few_shot_config(
        sentiment_data,
        tiny_qwen,
        training={
            "trainer_args": {
                "seed": 123,
                "report_to": "tensorboard",
                "output_dir": str(tmp_path / "elsewhere"),
                "logging_steps": 1,
                "save_strategy": "epoch",
            }
        },
    )
    args = trainer_arguments(config, tmp_path / "run", seed=7)
    assert args["seed"] == 123
    assert args["data_seed"] == 7  # not overridden: stays the run's seed
    assert args["report_to"] == "tensorboard"
    assert args["output_dir"] == str(tmp_path / "elsewhere")
    assert args["logging_steps"] == 1
    assert args["save_strategy"] == "epoch"
    assert args["bf16"] is False


def test_trainer_arguments_of_a_zero_shot_config(tiny_qwen, sentiment_data, tmp_path):
    config = parse_config(classification_config(sentiment_data, tiny_qwen))
    args = trainer_arguments(config, tmp_path, seed=3)
    assert args["seed"] == 3
    assert args["bf16"] is False
