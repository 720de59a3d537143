"""wahook.core does no I/O: no module in it imports an I/O library or reads the clock/env."""

from __future__ import annotations

import ast
from pathlib import Path

import wahook.core

CORE = Path(wahook.core.__file__).resolve().parent
FORBIDDEN_MODULES = {
    "asyncio",
    "grpc",
    "http",
    "io",
    "os",
    "pathlib",
    "redis",
    "requests",
    "select",
    "selectors",
    "shutil",
    "socket",
    "sqlite3",
    "ssl",
    "subprocess",
    "sys",
    "threading",
    "time",
    "tornado",
    "urllib",
    "datetime",
    "random",
    "logging",
}
ALLOWED_ROOTS = {
    "__future__",
    "_hashlib",  # OpenSSL's hashes behind hashlib and hmac (signature's keyed HMAC state)
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "google",
    "hashlib",
    "hmac",
    "json",
    "math",
    "re",
    "typing",
    "wahook",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_modules_exist() -> None:
    names = {p.stem for p in CORE.glob("*.py")}
    assert {"signature", "challenge", "normalize", "ids", "messages"} <= names


def test_core_imports_no_io_library() -> None:
    offenders = {}
    for path in sorted(CORE.glob("*.py")):
        for name in _imports(path):
            root = name.split(".")[0]
            if root in FORBIDDEN_MODULES or root not in ALLOWED_ROOTS:
                offenders[f"{path.name}: {name}"] = root
            # Inside wahook, only the core itself, the error tree and generated messages.
            if root == "wahook" and not name.startswith(
                ("wahook.core", "wahook.errors", "wahook.v1")
            ):
                offenders[f"{path.name}: {name}"] = root
            if root == "google" and not name.startswith("google.protobuf"):
                offenders[f"{path.name}: {name}"] = root
    assert offenders == {}


def test_core_does_not_read_environment_or_clock_by_attribute() -> None:
    for path in sorted(CORE.glob("*.py")):
        source = path.read_text("utf-8")
        for needle in ("os.environ", "time.time(", "datetime.now(", "open("):
            assert needle not in source, f"{path.name} uses {needle}"


def test_the_check_catches_an_offender(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import sqlite3\nfrom tornado import web\nimport os.path\n")
    assert {"sqlite3", "tornado", "os.path"} <= _imports(bad)
