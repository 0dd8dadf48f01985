"""Hyperparameter search inside a grid: an experiment's `search` section (`sft.config.schema.SearchConfig`)
is run as Optuna trials on the validation split, and only the chosen configuration is tested (docs/search.md).

- `space`: the space's keys checked against the config schema, Optuna distributions, trial configs;
- `study`: the study database in the results folder, its samplers and pruners, the trial marker;
- `trial`: what a trial's own process does (reports validation values to the pruner, tells its outcome);
- `driver`: the trials and the chosen configuration's runs handed to the grid runner, exactly once.
"""
