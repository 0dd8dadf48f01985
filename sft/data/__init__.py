"""The data of an experiment: loading splits, checking them, labels, shots, and chat prompts."""
