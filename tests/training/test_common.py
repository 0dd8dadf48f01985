"""sft.training.common: the trainer arguments, sft's defaults and the config's trainer_args over them."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import classification_config, merge, training_sections

from sft.config import parse_config
from sft.training.common import send_reports_to, trainer_arguments, wandb_environment


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


def test_wandb_environment_puts_each_run_in_its_folder_grouped_by_the_grid(tmp_path):
    folder = tmp_path / "grid-7" / "lora-r8" / "seed-3"
    chosen = wandb_environment(folder, {})
    assert chosen == {
        "WANDB_DIR": str(folder), "WANDB_RUN_GROUP": "grid-7", "WANDB_NAME": "lora-r8/seed-3",
        "WANDB_JOB_TYPE": "lora-r8", "WANDB_MODE": "offline", "WANDB_PROJECT": "sft", "WANDB_SILENT": "true",
    }  # fmt: skip
    # the user's mode and project win (an online cluster, a team project); the run's place and names do not
    user = wandb_environment(folder, {"WANDB_MODE": "online", "WANDB_PROJECT": "team", "WANDB_SILENT": "false"})
    assert "WANDB_MODE" not in user and "WANDB_PROJECT" not in user and "WANDB_SILENT" not in user
    assert user["WANDB_DIR"] == str(folder) and user["WANDB_RUN_GROUP"] == "grid-7"


def test_send_reports_to_sets_wandb_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "environ", {})
    folder = tmp_path / "results" / "few" / "seed-1"
    send_reports_to({"report_to": "none"}, folder)
    assert os.environ == {}
    send_reports_to({"report_to": ["tensorboard", "wandb"]}, folder)
    assert os.environ["WANDB_DIR"] == str(folder) and os.environ["WANDB_NAME"] == "few/seed-1"
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(folder / "tensorboard")
