"""The design lives in docs/: every pointer to it from the code, and every link inside it,
names a file that exists, and nothing cites design notes that are not in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where code and docs point into docs/ (generated code and dependencies excluded).
_SOURCES = [
    *sorted((ROOT / "server" / "wahook").rglob("*.py")),
    *sorted((ROOT / "tests").rglob("*.py")),
    *sorted((ROOT / "bench").glob("*.py")),
    ROOT / "pyproject.toml",
    ROOT / "Makefile",
    ROOT / "README.md",
    ROOT / "bench" / "README.md",
]
_DOCS_PATH = re.compile(r"docs/[A-Za-z0-9_./-]+\.md")
_MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# The starting design notes were kept outside the repository; users of it do not have them.
_OUTSIDE = re.compile(r"\b(DESIGN|STYLE)\.md\b")


def _sources() -> list[Path]:
    return [p for p in _SOURCES if p.is_file() and "wahook/v1" not in p.as_posix()]


def test_pointers_into_docs_name_existing_files() -> None:
    cited = {
        (path.relative_to(ROOT).as_posix(), ref)
        for path in _sources()
        for ref in _DOCS_PATH.findall(path.read_text(encoding="utf-8"))
    }
    assert cited, "no file points into docs/ (the pattern or the layout changed)"
    missing = sorted((where, ref) for where, ref in cited if not (ROOT / ref).is_file())
    assert missing == []


def test_links_inside_docs_resolve() -> None:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert pages
    broken = [
        (page.relative_to(ROOT).as_posix(), target)
        for page in pages
        for target in _MD_LINK.findall(page.read_text(encoding="utf-8"))
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert broken == []


def test_nothing_cites_design_notes_outside_the_repository() -> None:
    citing = [
        path.relative_to(ROOT).as_posix()
        for path in _sources()
        if path != Path(__file__).resolve() and _OUTSIDE.search(path.read_text(encoding="utf-8"))
    ]
    assert citing == []


_CODE_PATH = re.compile(r"`([A-Za-z0-9_./-]+\.(?:py|lua|proto|md|toml))(?::[^`]*)?`")


def _resolves(path: str) -> bool:
    """At the repository's top, under server/wahook/ (the page's convention), or, in a
    section about one package, under one of its directories (``app.py`` in http/)."""
    package = ROOT / "server" / "wahook"
    if (ROOT / path).exists() or (package / path).exists():
        return True
    return any((d / path).exists() for d in package.rglob("*") if d.is_dir())


def test_code_paths_in_architecture_exist() -> None:
    """A module moved or renamed must not leave the page naming the old file."""
    page = ROOT / "docs" / "architecture.md"
    paths = set(_CODE_PATH.findall(page.read_text(encoding="utf-8")))
    assert paths
    assert sorted(p for p in paths if not _resolves(p)) == []
