"""sft.registry.Registry: names and metadata without importing the implementation, then the object."""

from __future__ import annotations

import pytest

from sft.registry import Registry


def test_names_and_metadata_are_known_without_importing():
    registry = Registry("widget")
    registry.add("lazy", "sft_no_such_module:thing", higher_is_better=False)
    assert "lazy" in registry and list(registry) == ["lazy"]
    assert registry.info("lazy") == {"higher_is_better": False}
    with pytest.raises(ModuleNotFoundError):  # only `get` imports
        registry.get("lazy")


def test_get_imports_once_and_returns_the_object():
    registry = Registry("widget")
    registry.add("dumps", "json:dumps")
    import json

    assert registry.get("dumps") is json.dumps


def test_register_decorator_and_duplicates():
    registry = Registry("widget")

    @registry.register("double", outputs=("double",))
    def double(x):
        return 2 * x

    assert registry.get("double")(2) == 4 and registry.info("double") == {"outputs": ("double",)}
    with pytest.raises(ValueError, match="widget 'double' is already registered"):
        registry.add("double", lambda x: x)
    registry.remove("double")
    assert "double" not in registry


def test_unknown_names_list_the_choices_with_a_suggestion():
    registry = Registry("calibration")
    for name in ("batch", "contextual", "domain"):
        registry.add(name, f"x:{name}")
    assert registry.unknown(["batch", "contextal"]) == [
        "unknown calibration 'contextal' (did you mean 'contextual'?); available: batch, contextual, domain"
    ]
    with pytest.raises(KeyError, match="unknown calibration 'platt'"):
        registry.get("platt")
