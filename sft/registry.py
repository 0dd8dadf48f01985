"""One registry type for every extension point (metrics, calibrations, initializers, executors).

A registry knows its names without importing what they name: a built-in entry is a "module:attribute"
string, imported on first use, so validating a config checks every name in one pass at no import cost.
Entries carry metadata (a metric's `higher_is_better`, the result keys it produces), readable without
the import too. `register` adds an object directly, for extensions defined in user code.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve(target: str) -> Any:
    """The object a "module:attribute" string names, importing the module (how lazy entries and lazy
    metadata, such as an executor's options type, are loaded)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass
class Entry:
    """A name's target ("module:attribute" until first use, then the object) and its metadata."""

    target: Any
    info: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Name -> object, lazily imported; iteration and `in` never import anything."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: Any, **info: Any) -> None:
        """Register `target` (an object, or "module:attribute" to import on first use) under `name`."""
        known = self._entries.get(name)
        if known is not None and known.target is not target and known.target != target:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(target, dict(info))

    def register(self, name: str, **info: Any) -> Callable[[F], F]:
        """Decorator form of `add` for objects defined in code: `@METRICS.register("name")`."""

        def add(target: F) -> F:
            self.add(name, target, **info)
            return target

        return add

    def remove(self, name: str) -> None:
        """Forget `name` (an extension unloaded, a test cleaning up)."""
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def info(self, name: str) -> dict[str, Any]:
        """The metadata of `name` (no import); a KeyError naming the choices for an unknown name."""
        self._check(name)
        return self._entries[name].info

    def get(self, name: str) -> Any:
        """The object registered as `name`, imported on first use."""
        self._check(name)
        entry = self._entries[name]
        if isinstance(entry.target, str):
            entry.target = resolve(entry.target)
        return entry.target

    def unknown(self, names: Iterable[str]) -> list[str]:
        """One message per name that is not registered, each listing the available names."""
        available = ", ".join(self)
        return [
            f"unknown {self.kind} {name!r}{did_you_mean(name, self)}; available: {available}"
            for name in names
            if name not in self._entries
        ]

    def _check(self, name: str) -> None:
        problems = self.unknown([name])
        if problems:
            raise KeyError(problems[0])
