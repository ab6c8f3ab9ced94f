"""The README is a quick start, and the docs pages say who they are for and cite only what
the repository holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return [target for target in LINK.findall(text) if "://" not in target]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_at_a_file_and_heading_of_the_repository(page):
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name} links to {target}, which is not in the repository"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {path}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_cites_the_spec_files_kept_outside_the_repository(page):
    assert not re.search(r"\bspec/[\w-]+\.md", page.read_text()), page.name


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda p: p.name)
def test_every_docs_page_starts_with_who_it_is_for(page):
    # Its first lines (a title may come first) say who it is for
    opening = [line for line in page.read_text().splitlines() if line.strip()][:3]
    assert any(
        re.search(r"\bfor\b", line, re.IGNORECASE) and not line.startswith("#") for line in opening
    ), f"{page.name} does not open with who it is for"


def test_the_readme_is_a_quick_start_with_contents_and_links_to_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    assert "## Contents" in readme
    for heading in ("## Quick start", "## Walkthrough", "## Endpoints", "## Make targets"):
        assert heading in readme
    linked = set(links(ROOT / "README.md"))
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in linked, f"the README does not link docs/{page.name}"
