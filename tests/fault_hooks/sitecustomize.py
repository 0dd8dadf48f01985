"""Test-only fault injection for the grid runner's fault tests (never on the path outside them).

With this folder on PYTHONPATH and SFT_TEST_FAULTS='{"experiment name": "mode"}', every Python process
wraps `sft.experiment.run.run_experiment`: the named experiments raise, exit, kill themselves, hang, sleep
first, or fail on their first attempt only; `publish-sleep:N` trains, saves the shared adapter into the
store's staging folder, touches `<run>/publishing` and sleeps N seconds before the store's marker is
written. Each call also prints CUDA_VISIBLE_DEVICES, torch's intra-op threads and the process's cores
to its log.

With SFT_TEST_PAUSE='{"at": POINT, "marker": FILE, "seconds": N}', the first process to reach POINT touches
FILE and sleeps N seconds there (or until the file "until" names exists; a signal that raises ends the
sleep), so a test can signal the runner, or fill its disk, at
that exact moment: `expansion` (the grid file evaluated), `validation` (the grid's checks), `scheduling` (an
experiment being claimed and started), `training` (in the experiment, as its adapter training begins),
`report` (the final report, after every experiment ended), `export` (an export's files written, not yet
moved into place) and `forkserver-start` (the fork server importing its libraries).
"""

import json
import os

_FAULTS = json.loads(os.environ.get("SFT_TEST_FAULTS", "{}"))
# On a Ray node every Python process (agents, idle workers) would load this: there, only the experiment
# processes the runner starts (they carry SFT_RUN_LOG_CAPTURED) take the faults.
if os.environ.get("SFT_TEST_FAULTS_CHILDREN_ONLY") and not os.environ.get("SFT_RUN_LOG_CAPTURED"):
    _FAULTS = {}

if _FAULTS:
    import signal
    import sys
    import time

    import sft.experiment.run
    import sft.results.adapters

    _original = sft.experiment.run.run_experiment
    _publish = sft.results.adapters.SharedAdapter.publish
    _current = {}

    def publish(self, save, info):
        mode, run = _current.get("mode", ""), _current.get("run")
        if not mode.startswith("publish-sleep:"):
            return _publish(self, save, info)

        def slow_save(folder):
            saved = save(folder)
            (run.folder / "publishing").touch()
            time.sleep(float(mode.split(":")[1]))
            return saved

        return _publish(self, slow_save, info)

    sft.results.adapters.SharedAdapter.publish = publish

    def run_experiment(config, run):
        print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", file=sys.stderr, flush=True)
        import torch

        cores = ",".join(str(core) for core in sorted(os.sched_getaffinity(0)))
        print(f"threads={torch.get_num_threads()} cores={cores}", file=sys.stderr, flush=True)
        mode = _FAULTS.get(run.name, "")
        _current.update(mode=mode, run=run)
        if mode == "raise":
            raise RuntimeError("injected failure")
        if mode == "exit":
            os._exit(3)
        if mode == "sigkill":  # what the kernel's out-of-memory killer does
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "hang":
            time.sleep(3600)
        if mode.startswith("sleep:"):
            time.sleep(float(mode.split(":")[1]))
        if mode == "flaky":
            marker = run.folder / "failed-once"
            if not marker.exists():
                marker.touch()
                os._exit(4)
        return _original(config, run)

    sft.experiment.run.run_experiment = run_experiment


_PAUSE = json.loads(os.environ.get("SFT_TEST_PAUSE", "{}"))
if _PAUSE:
    import functools
    import importlib
    import sys
    import time
    from pathlib import Path

    def pausing(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            marker = Path(_PAUSE["marker"])
            if not marker.exists():
                marker.touch()
                deadline = time.time() + float(_PAUSE.get("seconds", 60))
                until = Path(_PAUSE["until"]) if _PAUSE.get("until") else None
                while time.time() < deadline and not (until and until.exists()):
                    time.sleep(0.05)
            return function(*args, **kwargs)

        return wrapper

    _at = _PAUSE["at"]
    if _at == "forkserver-start" and "sft.runner.forkserver" in sys.orig_argv:
        importlib.import_module = pausing(importlib.import_module)  # its first preload
    elif _at == "expansion":
        import sft.config.grid

        sft.config.grid.evaluate_file = pausing(sft.config.grid.evaluate_file)
    elif _at == "validation":
        import sft.runner.launch

        sft.runner.launch.validate = pausing(sft.runner.launch.validate)
    elif _at in ("scheduling", "report"):
        import sft.runner.scheduler

        if _at == "scheduling":
            sft.runner.scheduler.GridRunner._claim = pausing(sft.runner.scheduler.GridRunner._claim)
        else:
            sft.runner.scheduler.aggregate = pausing(sft.runner.scheduler.aggregate)
    elif _at == "export":
        import sft.serving.export

        sft.serving.export.write_manifest = pausing(sft.serving.export.write_manifest)
    elif _at == "training":
        import sft.experiment.run

        _run = sft.experiment.run.run_experiment

        def run_pausing_in_training(config, run):
            import sft.predictors.causal_lm

            sft.predictors.causal_lm.train_adapter = pausing(sft.predictors.causal_lm.train_adapter)
            return _run(config, run)

        sft.experiment.run.run_experiment = run_pausing_in_training
