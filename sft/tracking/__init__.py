"""Experiment tracking: a grid's runs in the tracker researchers already use (MLflow), each exactly once.

A tracked grid (`run-experiments --track mlflow`) has one parent run per results folder and tracker, and one
nested child run (tag `mlflow.parentRunId`) per experiment and seed, logged from the experiment's own process
whichever executor started it. The results folder stays the truth: every tracker call is best effort, a
tracker that is down costs a warning, and `aggregate --track` publishes what it missed.

    settings    what `--track` / `--tracking-uri` ask for (`TrackingOptions`), the default store's names
    records     the run ids kept in the results folder (`GridTrackingRecord`, `RunTrackingRecord`)
    params      the settings, metrics and step metrics a run logs, from its config and results.json
    client      the MLflow client behind short timeouts (with `store`, the modules that import mlflow)
    store       a new SQLite store: a copy of the empty store MLflow migrated once, not every migration again
    child       the experiment process's hook: open (or reopen) its child run, log its end
    publish     the grid's side: the parent run, finished folders published, the report on the parent
"""
