"""The README and the pages under docs/ stay navigable: every relative link names a file of the repository
and, where it names a section, a heading or an anchor of that file; the README stays a front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "benchmarks" / "RESULTS.md"])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """The fragment ids a page has: GitHub's heading slugs and explicit `<a id>` anchors."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found = set(re.findall(r'<a id="([^"]+)"', text))
    counts: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug if slug not in counts else f"{slug}-{counts[slug]}")
        counts[slug] = counts.get(slug, 0) + 1
    return found


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no such section")
    assert broken == []


def test_the_anchor_finder_knows_github_slugs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text('# A `b.c` and d\n\n## Again\n\n## Again\n\n<a id="x-y"></a>\n\n```\n# not a heading\n```\n')
    assert anchors(page) == {"a-bc-and-d", "again", "again-1", "x-y"}


def test_the_readme_stays_a_front_door():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    # CI runs the README's test command, which installs from the repository's files and runs pytest
    command = text.split("## Tests", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert command.startswith("pip install -r dev_requirements.txt -e . && ") and command.endswith(" python -m pytest")
    assert f"\n{command}\n" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
