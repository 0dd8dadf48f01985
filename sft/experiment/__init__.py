"""One experiment and seed in this process: `train`, `predict`, `evaluate`, `run_experiment`."""
