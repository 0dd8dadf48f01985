"""The executor registry: name -> factory(results_path=..., address=...) -> Executor.

How the grid runner starts each experiment: `forkserver` (the default; `sft.runner.forkserver`),
`subprocess` (`sft.runner.executors`) or `ray` (`sft.runner.ray_executor`). Names are known without
importing an executor, so `--executor` is checked before anything else.
"""

from __future__ import annotations

from sft.registry import Registry

EXECUTORS = Registry("executor")
EXECUTORS.add("forkserver", "sft.runner.forkserver:ForkServerExecutor")
EXECUTORS.add("subprocess", "sft.runner.executors:SubprocessExecutor")
EXECUTORS.add("ray", "sft.runner.ray_executor:RayExecutor")
