"""The package structure docs/ARCHITECTURE.md promises: no import cycles, light packages that stay light,
and task / mode dispatch in one place."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "sft"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The sft modules `path` imports anywhere (top level or inside functions), TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(name for name in names if name in known)
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_sft_modules():
    # a package __init__ that re-exports its modules is not a cycle of its own: a module importing a
    # sibling through the package is what counts, so packages are edges only where code imports them
    graph = import_graph()
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


LIGHT_PACKAGES = (
    "sft.config", "sft.report", "sft.runner", "sft.results", "sft.tasks", "sft.registry", "sft.cli", "sft.reference",
    "sft.search",
    "sft.tracking",
    # what an export's manifest and the request shapes need: checked before a model loads
    "sft.serving.manifest", "sft.serving.payload", "sft.serving.sagemaker",
)  # fmt: skip


@pytest.mark.slow
def test_light_packages_import_no_torch():
    """Validating a config, reporting and scheduling never pay for torch (or transformers) at import."""
    modules = sorted(
        name for name in import_graph() if name.startswith(LIGHT_PACKAGES) and name != "sft.runner.forkserver"
    )
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(result.stdout) == []


# Where a task type or a model mode may be told apart: the places that pick a task or predictor. Everything
# else (the config checks included) asks the task and predictor objects.
DISPATCH = {"sft/tasks/__init__.py", "sft/predictors/__init__.py"}


TASK_NAMES = {"classification", "multilabel", "generation"}


def branches_on_task_or_mode(path: Path) -> list[str]:
    """Comparisons of a task type with a task's name, and tests of `model.head` (generative or head mode)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names = {side.value for side in sides if isinstance(side, ast.Constant)}
            if "task_type" in ast.unparse(node) and names & TASK_NAMES:
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
        elif isinstance(node, (ast.If, ast.IfExp, ast.While)) and "model.head" in ast.unparse(node.test):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node.test)[:80]}")
    return found


def test_no_task_or_mode_branch_outside_the_dispatch():
    found = [
        branch
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(REPO).as_posix() not in DISPATCH
        for branch in branches_on_task_or_mode(path)
    ]
    assert found == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("if config.dataset.task_type == 'multilabel':\n    pass\n", 1),
        ("x = 1 if config.model.head else 2\n", 1),
        ("ok = task_type in TASKS\n", 0),
    ],
)
def test_the_branch_finder_sees_a_branch(tmp_path, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert len(branches_on_task_or_mode(path)) == expected


# The stack docs/ARCHITECTURE.md draws, bottom first: a package may import only packages below it.
STACK = (
    "sft.registry", "sft.results", "sft.synthetic", "sft.config", "sft.evaluation", "sft.tasks", "sft.search",
    "sft.data", "sft.model", "sft.scoring", "sft.training", "sft.predictors", "sft.tracking", "sft.experiment",
    "sft.report", "sft.runner", "sft.serving", "sft.reference", "sft.cli", "sft.__main__",
)  # fmt: skip

# What each package may import (docs/ARCHITECTURE.md's table): lower layers never reach up. `config` is a
# leaf above the registry and the results records; the checks that need tasks, data, models or other
# packages' registries are `experiment`'s.
ALLOWED = {
    "sft.registry": set(),
    "sft.results": set(),
    "sft.synthetic": set(),
    "sft.config": {"sft.registry", "sft.results"},
    "sft.evaluation": {"sft.config", "sft.registry"},
    "sft.tasks": {"sft.config", "sft.evaluation"},
    # the search space, the study, a trial's reporting, the driver: below the training that reports to it
    "sft.search": {"sft.config", "sft.evaluation", "sft.registry", "sft.results", "sft.tasks"},
    "sft.data": {"sft.config", "sft.tasks"},
    "sft.model": {"sft.config", "sft.registry"},
    "sft.scoring": {"sft.registry", "sft.data", "sft.tasks"},
    "sft.training": {"sft.config", "sft.data", "sft.evaluation", "sft.model", "sft.results", "sft.tasks"},
    "sft.predictors": {
        "sft.config", "sft.data", "sft.model", "sft.registry", "sft.scoring", "sft.tasks", "sft.training",
    },
    # the tracker's client, records and publishing: the experiment process, the runner and the report use it
    "sft.tracking": {"sft.config", "sft.results"},
    "sft.experiment": {
        "sft.config", "sft.data", "sft.evaluation", "sft.model", "sft.predictors", "sft.registry", "sft.results",
        "sft.scoring", "sft.search", "sft.tasks", "sft.tracking", "sft.training",
    },
    "sft.report": {
        "sft.config", "sft.evaluation", "sft.registry", "sft.results", "sft.search", "sft.tasks", "sft.tracking",
    },
    "sft.runner": {
        "sft.config", "sft.experiment", "sft.registry", "sft.report", "sft.results", "sft.search", "sft.tracking",
    },
    "sft.serving": {"sft.config", "sft.data", "sft.experiment", "sft.predictors", "sft.results", "sft.tasks"},
    "sft.cli": {
        "sft.config", "sft.experiment", "sft.report", "sft.results", "sft.runner", "sft.serving", "sft.tracking",
    },
    # pages generated from the config schema and the record models, which live beside their owners
    "sft.reference": {
        "sft.config", "sft.report", "sft.results", "sft.runner", "sft.search", "sft.serving", "sft.tracking",
    },
    "sft.__main__": {"sft.cli"},
}  # fmt: skip


def test_the_allowed_imports_follow_the_stack():
    """No back-edge: every package the table lets a package import sits below it in the stack."""
    assert set(ALLOWED) == set(STACK)
    above = [
        f"{package} may import {target}"
        for package, targets in ALLOWED.items()
        for target in sorted(targets)
        if STACK.index(target) >= STACK.index(package)
    ]
    assert above == []


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_each_package_imports_only_what_it_may():
    found = []
    for module, targets in sorted(import_graph().items()):
        package = package_of(module)
        allowed = ALLOWED.get(package, set()) | {package, "sft"}
        for target in sorted(targets):
            if package_of(target) not in allowed and not any(target.startswith(a) for a in allowed if a.count(".") > 1):
                found.append(f"{module} imports {target}")
    assert found == []
