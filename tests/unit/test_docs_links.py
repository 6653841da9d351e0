"""Every relative link of the user-facing Markdown resolves, so moved files cannot leave dead links.

Covers README.md, CHANGELOG.md, BENCHMARKS.md and docs/*.md (the benchmark history included):
a link's file must exist, and a link's anchor into one of these files (``#section`` within a
file, ``BENCHMARKS.md#section`` from another) must name one of that file's headings, as GitHub
makes their anchors. Links inside code (fenced blocks, `inline code`) are text, not links.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")]
)

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
#: Inline links and images: ``[text](target)`` or ``[text](target "title")``; text may hold brackets.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: Reference definitions: ``[name]: target``.
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s|$)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with inline code spans blanked, numbered from 1."""
    lines = []
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, CODE_SPAN.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its rendered text, lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (a repeated heading's get -1, -2, ...)."""
    seen: Counter[str] = Counter()
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            found.add(f"{base}-{seen[base]}" if seen[base] else base)
            seen[base] += 1
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """The (line, target) of every link and reference definition outside code."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        found.extend((number, target) for target in LINK.findall(line))
        reference = REFERENCE.match(line)
        if reference:
            found.append((number, reference.group(1)))
    return found


def broken_links(path: Path) -> list[str]:
    """What is wrong with the relative links of one Markdown file, one message per link."""
    problems = []
    for number, target in links(path):
        if SCHEME.match(target):
            continue  # https:, mailto: ...: not this test's business
        file_part, _, anchor = target.partition("#")
        file_part = file_part.split("?", 1)[0]
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.name}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def test_the_checked_files_exist() -> None:
    names = {str(path.relative_to(ROOT)) for path in FILES}
    assert {"README.md", "CHANGELOG.md", "BENCHMARKS.md", "docs/benchmarks-history.md"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_slugs_follow_github() -> None:
    assert slug("Multi-process mode (`--workers`)") == "multi-process-mode---workers"
    assert (
        slug("The Kafka source into `_bulk`: Kafka metadata") == "the-kafka-source-into-_bulk-kafka-metadata"
    )
    assert slug("Where the time goes (py-spy, max scenario)") == "where-the-time-goes-py-spy-max-scenario"


def test_a_dead_link_and_a_dead_anchor_are_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Second (part)\n\n[ok](#second-part) [ok](page.md#title) [bad](#third)\n"
        "[gone](missing.md) `[code](missing.md)`\n\n```\n[fenced](missing.md)\n```\n",
        encoding="utf-8",
    )
    found = [target for _, target in links(page)]
    assert found == ["#second-part", "page.md#title", "#third", "missing.md"]
    assert anchors(page) == {"title", "second-part"}
    assert broken_links(page) == [
        "page.md:5: #third: no heading with anchor #third",
        "page.md:6: missing.md: no such file",
    ]
