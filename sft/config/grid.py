"""Expanding a JSON or JSONNET file into named experiment configs.

A JSON file holding one config is one experiment named after the file. A JSONNET (or JSON) file that
evaluates to `{"configs": {name: config}}` is a grid with explicit names; one that evaluates to a list
of configs is a grid whose names are derived from each config's settings and hash, so they stay
stable when the list is reordered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _jsonnet

from sft.config.errors import ConfigError
from sft.config.experiment import ExperimentConfig
from sft.config.hashing import config_hash
from sft.config.parsing import check_command, parse_config
from sft.results.layout import check_name, last_path_part, slug


def parse_ext_vars(pairs: list[str] | None) -> dict[str, str]:
    """`["key=value", ...]` -> dict, for JSONNET's std.extVar."""
    ext_vars = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError([f"--ext-var {pair!r}: write it as key=value"])
        ext_vars[key] = value
    return ext_vars


def evaluate_file(path: str | Path, ext_vars: dict[str, str] | None = None) -> Any:
    """The JSON value of a .json or .jsonnet file; syntax errors become a ConfigError naming the spot."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: no such file"])
    if path.suffix == ".json" and not ext_vars:
        try:
            return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            raise ConfigError([f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"]) from None
        except DuplicateKeyError as error:
            raise ConfigError(
                [f"{path}: key {error.args[0]!r} appears twice in one object (JSON would keep only the last); "
                 "rename or remove one"]
            ) from None  # fmt: skip
    try:
        return json.loads(_jsonnet.evaluate_file(str(path), ext_vars=ext_vars or {}))
    except RuntimeError as error:
        # jsonnet's message already names file:line:column; keep its first lines.
        text = "\n    ".join(str(error).strip().splitlines()[:6])
        raise ConfigError([f"{path}: JSONNET error: {text}"]) from None


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice; json.loads would silently keep the last value."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(key)
        seen[key] = value
    return seen


def raw_experiments(value: Any, source: str) -> dict[str, Any]:
    """Name -> raw config, from the evaluated file."""
    if isinstance(value, dict) and "configs" in value:
        extra = sorted(set(value) - {"configs"})
        if extra:
            raise ConfigError([f"{source}: a grid holds only 'configs'; unknown top-level keys {extra}"])
        configs = value["configs"]
        if not isinstance(configs, dict) or not configs:
            raise ConfigError([f"{source}: 'configs' must be a non-empty object of name -> config"])
        return dict(configs)
    if isinstance(value, list):
        if not value:
            raise ConfigError([f"{source}: the list of configs is empty"])
        named: dict[str, Any] = {}
        for index, raw in enumerate(value):
            name = derived_name(raw, index)
            if name in named:
                first = list(named).index(name)
                raise ConfigError([f"{source}: the configs at positions {first} and {index} are identical"])
            named[name] = raw
        return named
    if isinstance(value, dict):
        return {Path(source).stem: value}
    raise ConfigError([f"{source}: expected a config object, a list of configs or {{'configs': {{...}}}}"])


def derived_name(raw: Any, index: int) -> str:
    """A readable, stable name for a config given in a list: dataset, model, shots and a short hash."""
    if not isinstance(raw, dict):
        return f"config-{index}"
    dataset, model = raw.get("dataset"), raw.get("model")
    dataset = dataset if isinstance(dataset, dict) else {}
    model = model if isinstance(model, dict) else {}
    parts = [
        slug(last_path_part(str(dataset.get("path", "data")))),
        slug(last_path_part(str(model.get("name", "model")))),
        f"shots{dataset.get('shots', 0)}",
        config_hash(raw)[:8],
    ]
    return "-".join(part for part in parts if part)


# More checks of one parsed config (`sft.experiment.checks.config_problems`): its problems, each naming its key.
Check = Callable[[ExperimentConfig], list[str]]


def load_experiments(
    path: str | Path, ext_vars: dict[str, str] | None = None, command: str | None = None, check: Check | None = None
) -> dict[str, ExperimentConfig]:
    """Expand and validate every experiment of a file, each also by `check`; raise one ConfigError listing all
    problems."""
    raw = raw_experiments(evaluate_file(path, ext_vars), str(path))
    configs: dict[str, ExperimentConfig] = {}
    problems: list[str] = []
    for name, entry in raw.items():
        source = f"{path} [{name}]" if len(raw) > 1 else str(path)
        name_problem = check_name(name)
        if name_problem:
            problems.append(f"{source}: {name_problem}")
        try:
            config = parse_config(entry, source)
        except ConfigError as error:
            problems.extend(error.messages)
            continue
        if command:
            problems.extend(f"{source}: {message}" for message in check_command(config, command))
        if check is not None:
            problems.extend(f"{source}: {message}" for message in check(config))
        configs[name] = config
    if problems:
        raise ConfigError(problems)
    return configs


def load_single(
    path: str | Path, command: str, ext_vars: dict[str, str] | None = None, check: Check | None = None
) -> tuple[str, ExperimentConfig]:
    """The one experiment of a file given to a single-config command."""
    configs = load_experiments(path, ext_vars, command, check)
    if len(configs) != 1:
        raise ConfigError(
            [f"{path}: `{command}` takes one experiment but the file defines {len(configs)}; use run-experiments"]
        )
    return next(iter(configs.items()))
