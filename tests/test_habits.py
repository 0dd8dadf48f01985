"""The habits CI enforces, checked where a test can see them: CI and pre-commit run the same lint, format
and type checks before the README's test command; tests share code through the `helpers` package and
never import each other; code names no path of one machine and no issue of this project."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO

TESTS = REPO / "tests"
TEST_COMMAND = (
    "pip install -r dev_requirements.txt -e . && pip install --target build/test-wandb -r tests/wandb_requirements.txt "
    "&& python -m pytest"
)
CHECKS = ["ruff check sft tests benchmarks", "ruff format --check sft tests benchmarks", "mypy"]


def commands(script: Path) -> list[str]:
    """The command lines of a shell script, comments and blank lines left out."""
    lines = (line.strip() for line in script.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_checks_lint_format_and_types_before_the_readme_test_command():
    lines = commands(REPO / ".ci" / "run")
    assert lines[-1] == TEST_COMMAND
    assert TEST_COMMAND in (REPO / "README.md").read_text(encoding="utf-8")
    positions = [lines.index(check) for check in CHECKS]
    assert positions == sorted(positions) and positions[-1] < len(lines) - 1


def test_pre_commit_runs_what_ci_runs():
    entries = re.findall(r"^\s*entry:\s*(.+?)\s*$", (REPO / ".pre-commit-config.yaml").read_text(), re.M)
    # the hooks get the file names (ruff) or check the whole package (mypy, from pyproject.toml)
    assert entries == [check.removesuffix(" sft tests benchmarks") for check in CHECKS]


def test_tests_import_helpers_and_never_each_other():
    """A module of tests/ (a test file, a conftest, a stray helper module) imported by another test
    module couples the two: what they share belongs in `helpers` or a fixture."""
    own = {path.stem for path in TESTS.rglob("*.py") if "helpers" not in path.relative_to(TESTS).parts}
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found += [f"{path.relative_to(REPO)}: {name}" for name in names if name.split(".")[0] in own | {"tests"}]
    assert found == []


def test_code_names_no_machine_path_and_no_issue_number():
    pattern = re.compile(r"(/(work|home|root|Users)/\w|\bissues?\s*#?\d)", re.IGNORECASE)
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for folder in ("sft", "tests", "benchmarks")
        for path in sorted((REPO / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
