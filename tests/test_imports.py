"""Imports sit at the top of the module, where a reader finds every dependency and a missing one fails when the
module loads. An import inside a function is kept only where laziness is the point:

- `sft/cli.py`: each command imports what it runs, so `--help` is instant;
- `sft/runner/forkserver.py`: it imports the libraries when told to preload them, before it forks;
- a library of LAZY, anywhere: heavy, slow to import or optional, so the light packages (docs/ARCHITECTURE.md)
  and a command that refuses its config never pay for it;
- a pair of ALLOWED: an sft module whose import at the top would drag a LAZY library into a light package.

"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "sft"

# Modules where every import may sit inside a function.
EXEMPT = {"sft.cli", "sft.runner.forkserver"}

# Library (top-level name) -> why it is imported inside functions.
LAZY = {
    "torch": "heavy; the light packages never import it",
    "transformers": "heavy (imports torch for models and trainers)",
    "peft": "heavy (imports torch, transformers and bitsandbytes)",
    "trl": "heavy (imports transformers' trainer)",
    "datasets": "heavy (pyarrow, pandas)",
    "accelerate": "imports torch",
    "bitsandbytes": "slow, probes the GPU; only quantized layers need it",
    "umap": "slow (numba); only the umap initializer needs it",
    "sklearn": "slow; the metric functions of the light evaluation package and the plots need it when called",
    "rouge_score": "slow (nltk); only ROUGE needs it",
    "matplotlib": "slow; only plots need it",
    "pandas": "slow; only the report's CSV and the prediction files need it",
    "ray": "optional (the ray extra); only the ray executor needs it",
    "submitit": "only the Slurm executor needs it; the runner imports that module for its options",
    "optuna": "slow (sqlalchemy, alembic); only a grid with a search needs it",
    "mlflow": "slow (about 2 s) and needed only by a tracked grid; the runner and every experiment import sft.tracking",
    "jsonschema": "slow (referencing, rpds); only a structured task's checks and answers need it",
    "llguidance": "the grammar engine; only constrained decoding needs it",
}

# (module, imported sft module) -> why the import stays inside a function.
ALLOWED: dict[tuple[str, str], str] = {
    ("sft.serving.runs", "sft.predictors.causal_lm"): (
        "a predictor module imports torch; sft.serving.api imports serving.runs, and the light sagemaker handler "
        "imports sft.serving.api"
    ),
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules an import statement names (a relative import resolved against `module`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        return [node.module or ""]
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return [".".join([*base, *([node.module] if node.module else [])])]


def inner_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) of every import inside a function (methods and nested functions included)."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.update((inner.lineno, name) for name in imported_modules(inner, module, is_package))
    return sorted(found)


def is_lazy(name: str) -> bool:
    return name.split(".")[0] in LAZY


def module_inner_imports(root: Path) -> dict[str, list[tuple[int, str]]]:
    """module -> (line, imported module) of its inner imports, for every module of the sft package under `root`."""
    found = {}
    for path in sorted((root / "sft").rglob("*.py")):
        module = module_name(path, root)
        found[module] = inner_imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    return found


def violations(root: Path) -> list[str]:
    """Every inner import under `root`/sft that no exception covers."""
    return [
        f"{module}:{line} imports {name} inside a function"
        for module, imports in module_inner_imports(root).items()
        if module not in EXEMPT
        for line, name in imports
        if not is_lazy(name) and (module, name) not in ALLOWED
    ]


def test_imports_sit_at_the_top_of_the_module():
    assert violations(REPO) == [], "move these imports to the top (or say why not in tests/test_imports.py)"


def test_every_allowed_inner_import_still_exists():
    """An entry whose import has moved to the top is removed, so the list holds only what is still there."""
    present = {(module, name) for module, imports in module_inner_imports(REPO).items() for _, name in imports}
    assert sorted(ALLOWED.keys() - present) == []


def test_allowed_does_not_overlap_the_lazy_list():
    assert [pair for pair in ALLOWED if is_lazy(pair[1])] == []


def test_an_inner_import_outside_the_exceptions_is_found(tmp_path):
    code = "def run():\n    import json\n    import torch\n    from sft.config import parse_config\n"
    for module in ("sft/tasks/probe.py", "sft/cli.py", "sft/runner/forkserver.py"):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text(code)
    assert violations(tmp_path) == [
        "sft.tasks.probe:2 imports json inside a function",
        "sft.tasks.probe:4 imports sft.config inside a function",
    ]


PROBE = """
from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sft.config import ExperimentConfig


def top(config: ExperimentConfig) -> None:
    import numpy as np
    from sft.tasks import task_for

    def nested():
        from . import sibling

    class Local:
        def method(self):
            from ..data.prepare import prepare_data
"""


def test_the_finder_sees_imports_in_functions_methods_and_nested_functions():
    assert inner_imports(PROBE, "sft.pkg.probe") == [
        (12, "numpy"),
        (13, "sft.tasks"),
        (16, "sft.pkg"),
        (20, "sft.data.prepare"),
    ]


def test_the_finder_resolves_a_relative_import_of_a_package():
    assert inner_imports("def f():\n    from .loading import load_model\n", "sft.model", is_package=True) == [
        (2, "sft.model.loading")
    ]


@pytest.mark.parametrize(
    "name, lazy",
    [
        ("torch", True),
        ("sklearn.metrics", True),
        ("numpy", False),
        ("sft.model.loading", False),
        ("torchvision", False),
    ],
)
def test_the_lazy_list_matches_whole_package_names(name, lazy):
    assert is_lazy(name) is lazy
