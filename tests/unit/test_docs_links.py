"""Every relative link in README.md and docs/ points at a file (and heading) that exists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> Iterator[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, with GitHub's -1, -2 suffixes for repeats."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose_lines(page.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> Iterator[str]:
    """The targets of the Markdown links of a page (not those inside code)."""
    for line in _prose_lines(page.read_text(encoding="utf-8")):
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            yield match.group(1)


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of a page that do not resolve, each with the reason."""
    problems: list[str] = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.is_relative_to(root):
            problems.append(f"{target}: points outside the repository")
        elif not destination.exists():
            problems.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading #{anchor} in {destination.name}")
    return problems


class TestSlug:
    def test_code_and_punctuation_are_dropped(self) -> None:
        """A heading with code spans and punctuation gets GitHub's anchor."""
        assert slug("`salesforce.auth` with `method: jwt`") == "salesforceauth-with-method-jwt"
        assert slug("Claim ahead, release after the answer") == (
            "claim-ahead-release-after-the-answer"
        )
        assert slug("1. Salesforce: an integration user") == "1-salesforce-an-integration-user"

    def test_repeated_headings_get_suffixes(self, tmp_path: Path) -> None:
        """A second heading with the same text gets -1, as on GitHub."""
        page = tmp_path / "page.md"
        page.write_text("# Notes\n\n## Notes\n\n```\n# not a heading\n```\n", encoding="utf-8")
        assert anchors(page) == {"notes", "notes-1"}


class TestBroken:
    def test_reports_missing_files_and_headings(self, tmp_path: Path) -> None:
        """A link to a missing file or heading is reported; code spans and URLs are ignored."""
        page = tmp_path / "page.md"
        (tmp_path / "other.md").write_text("# Present\n", encoding="utf-8")
        page.write_text(
            "[a](other.md#present) [b](other.md#absent) [c](missing.md) "
            "[d](https://example.com/x) `[e](not-a-link.md)` [f](#here)\n\n## Here\n",
            encoding="utf-8",
        )
        assert broken(page, root=tmp_path) == [
            "other.md#absent: no heading #absent in other.md",
            "missing.md: no such file",
        ]

    def test_reports_links_leaving_the_repository(self, tmp_path: Path) -> None:
        """A relative link that climbs out of the repository is reported even if it resolves."""
        repo = tmp_path / "repo"
        repo.mkdir()
        (tmp_path / "notes.md").write_text("# Outside\n", encoding="utf-8")
        page = repo / "README.md"
        page.write_text("[notes](../notes.md)\n", encoding="utf-8")
        assert broken(page, root=repo) == ["../notes.md: points outside the repository"]


#: A Markdown document named in prose or code: ``name.md``, maybe with a relative path.
_DOCUMENT = re.compile(r"(?<![\w/.-])((?:\.\.?/)*[\w./-]*?[\w-]+\.md)\b")


def outside_references(page: Path, root: Path = ROOT) -> list[str]:
    """Markdown documents a page names that the repository does not hold.

    A name counts as the repository's when it is a file relative to the page, to
    the repository's root or to ``docs/``, without climbing out of the root.
    """
    problems = []
    for name in sorted(set(_DOCUMENT.findall(page.read_text(encoding="utf-8")))):
        places = (page.parent / name, root / name, root / "docs" / name)
        resolved = [place.resolve() for place in places]
        if not any(path.is_relative_to(root) and path.is_file() for path in resolved):
            problems.append(name)
    return problems


class TestOutsideReferences:
    def test_names_of_documents_not_in_the_repository_are_found(self, tmp_path: Path) -> None:
        """A document named in prose that the repository does not hold is reported."""
        repo = tmp_path / "repo"
        (repo / "docs").mkdir(parents=True)
        (repo / "docs" / "design.md").write_text("# Design\n", encoding="utf-8")
        (tmp_path / "brief.md").write_text("# Outside\n", encoding="utf-8")
        page = repo / "README.md"
        page.write_text(
            "See docs/design.md and design.md, not brief.md nor ../brief.md.\n", encoding="utf-8"
        )
        assert outside_references(page, root=repo) == ["../brief.md", "brief.md"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    """Each relative link of the page names an existing file and, if given, heading."""
    assert broken(page) == []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_reference_to_documents_outside_the_repository(page: Path) -> None:
    """The documentation cites only documents of this repository, in links or in prose."""
    assert outside_references(page) == []
