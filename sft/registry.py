"""Extension points are plain dicts of name -> function. These helpers add the `register` decorator and
lookups whose errors list what is available."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def registrar(registry: dict[str, Callable], kind: str) -> Callable[[str], Callable[[F], F]]:
    """Build the `register(name)` decorator of one registry."""

    def register(name: str) -> Callable[[F], F]:
        def add(function: F) -> F:
            if name in registry and registry[name] is not function:
                raise ValueError(f"{kind} {name!r} is already registered")
            registry[name] = function
            return function

        return add

    return register


def unknown_names(registry: dict[str, Callable], names: Iterable[str], kind: str) -> list[str]:
    """One message per name that is not registered, each listing the available names."""
    available = ", ".join(sorted(registry))
    return [
        f"unknown {kind} {name!r}{did_you_mean(name, registry)}; available: {available}"
        for name in names
        if name not in registry
    ]


def lookup(registry: dict[str, Callable], name: str, kind: str) -> Callable:
    problems = unknown_names(registry, [name], kind)
    if problems:
        raise KeyError(problems[0])
    return registry[name]
