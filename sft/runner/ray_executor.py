"""The `ray` executor: each experiment is a Ray task that runs `sft.cli run-experiment` in its own process.

The task asks Ray for the GPUs of `resources.gpus` (when the cluster has GPUs; Ray then sets
CUDA_VISIBLE_DEVICES) and one CPU per process. Results go to the results folder, which must be on
storage shared by every node. The runner keeps the same semantics as locally: it writes status.json,
skips finished experiments, and a timeout or an interrupt cancels the task, which kills the worker and,
through the parent-death signal, the experiment's process.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from sft.runner.executors import ExecutorContext, Job, child_command
from sft.runner.processes import signal_group, start_child


@dataclass(frozen=True)
class RayOptions:
    """The Ray cluster to submit to (`--ray-address`); None: a local Ray started by the runner."""

    address: str | None = None

    def given(self) -> bool:
        return self != RayOptions()

    def problems(self, chosen: bool) -> list[str]:
        if not chosen and self.given():
            return ["--ray-address applies to --executor ray only; add it or drop it"]
        return []


def run_in_worker(job: Job) -> tuple[int, str]:
    """Body of the Ray task: the experiment in a fresh process of its own session, with as many intra-op
    threads as the task has CPUs; its exit code and the Ray node it ran on."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    with open(job.log_path, "a", encoding="utf-8") as log:
        log.write(f"sft runner: Ray node {node}, {job.threads} thread(s) per process\n")
        log.flush()
        process = start_child(child_command(job), stdout=log, env=job.env())
    try:
        return process.wait(), node
    finally:
        if process.poll() is None:  # the task was cancelled
            signal_group(process.pid, signal.SIGKILL)
            process.wait()


class RayHandle:
    pid = None

    def __init__(self, ray: Any, ref: Any):
        self.ray, self.ref = ray, ref
        self.cancelled = False
        self.node: str | None = None
        self.lost = ""

    def started(self) -> bool:
        return True

    def poll(self) -> int | None:
        ready, _ = self.ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            code, self.node = self.ray.get(self.ref)
            return int(code)
        except self.ray.exceptions.TaskCancelledError:
            return -signal.SIGTERM
        except self.ray.exceptions.RayError as error:  # the worker died (the cancel, out of memory, its node)
            if not self.cancelled:
                self.lost = f"Ray worker lost ({type(error).__name__})"
            return -signal.SIGKILL

    def signal(self, signum: int) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.ray.cancel(self.ref, force=True)

    def end_reason(self) -> str:
        return self.lost

    def details(self) -> dict[str, Any]:
        return {"ray_node": self.node}


class RayExecutor:
    """Submits experiments to an existing Ray cluster (`options.address`) or to a local Ray started here.
    The results folder must be on storage every node sees; Ray needs nothing else from the context."""

    def __init__(self, context: ExecutorContext, options: RayOptions):
        import ray

        self.ray = ray
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            ray.init(address=options.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        self.task = ray.remote(max_retries=0)(run_in_worker)

    def start(self, job: Job) -> RayHandle:
        resources = job.config.resources
        options: dict[str, Any] = {"num_cpus": job.cpus(), "num_gpus": resources.gpus if self.has_gpus else 0}
        if resources.ray_resources:
            options["resources"] = resources.ray_resources
        return RayHandle(self.ray, self.task.options(**options).remote(job.with_threads(job.cpus())))

    def close(self) -> None:
        if self.owns_ray:
            self.ray.shutdown()
