"""The generated reference pages: docs/config.md is what the schema generates, and the generator shows every
field's type, default, allowed values and description."""

from __future__ import annotations

import enum
from typing import Literal

from helpers import REPO
from pydantic import BaseModel, ConfigDict, Field

from sft.config import ExperimentConfig
from sft.reference import PAGES, config_page, main, render_models, stale_pages


def test_every_committed_page_is_what_its_models_generate():
    assert stale_pages() == [], "run `python -m sft.reference` and commit the pages it writes"


def test_the_committed_config_page_is_what_the_schema_generates():
    committed = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == config_page(), "docs/config.md is stale: run `python -m sft.reference` and commit it"


def section(page: str, heading: str) -> str:
    """The text of one section of a generated page, up to the next anchor."""
    start = page.index(f"\n{heading}\n")
    end = page.find("<a id=", start)
    return page[start : end if end >= 0 else None]


def row(page: str, heading: str, key: str) -> list[str]:
    """The cells of a field's table row."""
    line = next(line for line in section(page, heading).splitlines() if line.startswith(f"| `{key}` |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_the_config_page_lists_inference_batch_size_with_its_default_and_bound():
    key, kind, default, allowed, description = row(config_page(), "### `inference`", "batch_size")
    assert (key, kind, default, allowed) == ("`batch_size`", "int", "`8`", "≥ 1")
    assert description


def test_the_config_page_shows_choices_nested_sections_and_required_keys():
    page = config_page()
    assert row(page, "### `inference`", "normalization")[3] == '`"sum"`, `"mean"`, `"per_char"`, `"pmi"`'
    assert row(page, "### `lora`", "lora_dropout")[3] == "≥ 0.0, < 1.0"
    assert row(page, "## ExperimentConfig", "dataset")[1:3] == ["[DatasetConfig](#dataset)", "required"]
    assert row(page, "### `inference`", "calibration_args")[1] == "[CalibrationConfig](#inference-calibration_args)"
    assert '<a id="inference-calibration_args"></a>' in page
    assert row(page, "### `model`", "quantization")[1] == r"[QuantizationConfig](#model-quantization) \| null"


def test_every_config_field_has_a_description():
    missing = []

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{path}{name}")
            for nested in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(nested, type) and issubclass(nested, BaseModel):
                    walk(nested, f"{path}{name}.")

    walk(ExperimentConfig, "")
    assert missing == []


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(BaseModel):
    """An inner record."""

    size: int = Field(3, gt=0, le=10, description="How big.")


class Outer(BaseModel):
    """An outer record."""

    model_config = ConfigDict(title="outer.json", extra="allow")

    kind: Literal["a", "b"] = Field("a", description="Which one.")
    colour: Colour = Field(Colour.RED, description="Its colour.")
    inner: Inner = Field(default_factory=Inner, description="Nested.")
    inners: list[Inner] | None = Field(None, description="The same model again.")
    items: list[str] = Field(min_length=1, alias="item-list", description="Required, with an alias.")


class Other(BaseModel):
    inner: Inner | None = None


def test_render_models_walks_nested_models_once_with_their_key_paths():
    page = render_models("Formats", "The files.", [Outer, Other])

    assert page.startswith("# Formats\n\nThe files.\n")
    assert "## outer.json" in page and "### `outer.json.inner`" in page and "## Other" in page
    assert page.count("An inner record.") == 1  # Inner is documented once, at its first path
    assert "Keys not listed here are accepted as well." in section(page, "## outer.json")
    assert row(page, "## outer.json", "kind")[1:4] == ["str", '`"a"`', '`"a"`, `"b"`']
    assert row(page, "## outer.json", "colour")[1:4] == ["Colour", '`"red"`', '`"red"`, `"blue"`']
    assert row(page, "## outer.json", "inner")[1:3] == ["[Inner](#outer-json-inner)", "its defaults"]
    assert row(page, "## outer.json", "inners")[1] == r"list[[Inner](#outer-json-inner)] \| null"
    assert row(page, "## outer.json", "item-list")[1:4] == ["list[str]", "required", "at least 1 long"]
    assert row(page, "### `outer.json.inner`", "size")[1:5] == ["int", "`3`", "> 0, ≤ 10", "How big."]
    assert row(page, "## Other", "inner")[1:] == [r"[Inner](#outer-json-inner) \| null", "`null`", "", ""]
    assert render_models("Formats", "The files.", [Outer, Other]) == page


def test_check_fails_on_a_stale_page_and_passes_once_written(tmp_path, capsys):
    (tmp_path / "config.md").write_text("# Config reference\n\nhand-edited\n", encoding="utf-8")
    assert main(["--check", "--docs", str(tmp_path)]) == 1
    assert "config.md differs" in capsys.readouterr().out

    assert main(["--docs", str(tmp_path)]) == 0
    assert main(["--check", "--docs", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(PAGES)
