"""The design lives in docs/: every pointer to it from the code, and every link inside it,
names a file that exists, and nothing cites design notes that are not in the repository."""

import ast
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


# `http/app.py:make_app`, `store/sqlite/groups.py:fetch`, `Session._track`: a pointer to a
# function, class or attribute, which a rename leaves naming nothing.
_CODE_NAME = re.compile(r"`([A-Za-z0-9_./-]+\.py):([A-Za-z_][A-Za-z0-9_.]*)`")
_CLASS_MEMBER = re.compile(r"`([A-Z][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")


def _names(tree: ast.AST) -> dict[str, set[str]]:
    """Every function, class and assigned name of a module at any depth (a method found by
    its own name too), and each class's members: its definitions, class attributes and
    the ``self.x`` it assigns or reads."""
    found: dict[str, set[str]] = {"": set()}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[""].add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found[""].add(node.id)
        if isinstance(node, ast.ClassDef):
            members = found.setdefault(node.name, set())
            for inner in ast.walk(node):
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    members.add(inner.name)
                elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    members.add(inner.id)
                elif isinstance(inner, ast.Attribute) and _is_self(inner.value):
                    members.add(inner.attr)
    return found


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _defines(names: dict[str, set[str]], dotted: str) -> bool:
    """``name`` anywhere in the module, or ``Class.member`` (deeper parts unchecked)."""
    first, *rest = dotted.split(".")
    if not rest:
        return first in names[""]
    return first in names and rest[0] in names[first]


def _module(path: str) -> Path | None:
    package = ROOT / "server" / "wahook"
    for candidate in (ROOT / path, package / path, ROOT / "bench" / path):
        if candidate.is_file():
            return candidate
    found = [p for p in package.rglob(path) if "wahook/v1" not in p.as_posix()]
    return found[0] if len(found) == 1 else None


def test_code_names_in_the_docs_exist() -> None:
    """`file.py:name` and `Class.member` in docs/ and the READMEs name what is there: a
    function renamed must not leave "where to change X" pointing at nothing."""
    pages = [*sorted((ROOT / "docs").rglob("*.md"))]
    pages += [ROOT / p for p in ("README.md", "proto/README.md", "deploy/README.md")]
    classes: dict[str, set[str]] = {}
    for source in (ROOT / "server" / "wahook").rglob("*.py"):
        if "wahook/v1" not in source.as_posix():
            for cls, members in _names(ast.parse(source.read_text(encoding="utf-8"))).items():
                if cls:
                    classes.setdefault(cls, set()).update(members)
    # `Delivery.ack_id`: a wahook.v1 message's field (proto/ documents those), not a class's.
    for proto in (ROOT / "proto" / "wahook" / "v1").glob("*.proto"):
        for message in re.findall(r"^\s*message (\w+)", proto.read_text(), re.MULTILINE):
            classes.pop(message, None)
    missing, checked = [], 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        where = page.relative_to(ROOT).as_posix()
        for path, dotted in _CODE_NAME.findall(text):
            module = _module(path)
            checked += 1
            if module is None or not _defines(_names(ast.parse(module.read_text())), dotted):
                missing.append(f"{where}: {path}:{dotted}")
        for cls, member in _CLASS_MEMBER.findall(text):
            if cls in classes:
                checked += 1
                if member not in classes[cls]:
                    missing.append(f"{where}: {cls}.{member}")
    assert checked > 100, checked  # the patterns still find the pointers
    assert missing == []
