"""sft.config.validation: keys a config passes on to a library (here peft.LoraConfig) are checked against it."""

from __future__ import annotations

import copy

from sft.config import parse_config

SOURCE = "cfg.json"


def test_unknown_lora_key_is_reported_with_the_close_peft_argument(trained_raw):
    """`lora` passes extra keys on to peft.LoraConfig; the full validation checks them against peft.

    `rank` is the usual name of LoRA's `r`: a researcher writing it must be pointed at `r`."""
    from sft.config.validation import library_problems

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
