"""The documentation holds together: README.md stays a short front page, every relative link in
README.md and docs/*.md points at a file that exists (and at a heading that exists, for links with
an ``#anchor``), and every page under docs/ is on README's map."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 15_000  # bytes: the front page is a map, the rest lives in docs/

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    out: set[str] = set()
    seen: dict[str, int] = {}
    for h in HEADING.findall(FENCE.sub("", page.read_text())):
        s = slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def broken_links(pages: list[Path]) -> list[str]:
    broken = []
    for page in pages:
        name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
        for target in relative_links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{name}: {target} (no heading with that anchor)")
    return broken


def test_readme_is_a_short_front_page() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move detail to a docs/ page"


def test_relative_links_resolve() -> None:
    assert len(PAGES) > 5
    broken = broken_links(PAGES)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_on_the_readme_map() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages README.md does not link to: {missing}"


def test_the_checker_catches_a_broken_link(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Running it: `forewarn up`\n\n"
        "[ok](#running-it-forewarn-up) [gone](missing.md) [bad anchor](#nope)\n"
        "`[not a link](nowhere.md)`\n```\n[in code](nowhere.md)\n```\n[web](https://example.com/x)\n"
    )
    assert [b.split(": ", 1)[1] for b in broken_links([page])] == [
        "missing.md (no such file)",
        "#nope (no heading with that anchor)",
    ]
