"""Test-only fault injection for the grid runner's fault tests (never on the path outside them).

With this folder on PYTHONPATH and SFT_TEST_FAULTS='{"experiment name": "mode"}', every Python process
wraps `sft.experiment.run.run_experiment`: the named experiments raise, exit, kill themselves, hang, sleep
first, or fail on their first attempt only; `publish-sleep:N` trains, saves the shared adapter into the
store's staging folder, touches `<run>/publishing` and sleeps N seconds before the store's marker is
written. Each call also prints CUDA_VISIBLE_DEVICES, torch's intra-op threads and the process's cores
to its log.
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
