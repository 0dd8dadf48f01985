"""Training adapters: a causal LM with TRL's SFTTrainer, a classification head with a Trainer, and
what both share (arguments, statistics, saving)."""
