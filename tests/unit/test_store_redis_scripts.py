"""The Redis log's Lua files: each is shipped with the package (pyproject's package data,
which the wheel and the container image are built from) and used by a script."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from wahook.store.redis import scripts

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "server" / "wahook" / "store" / "redis" / "lua"


def test_every_lua_file_is_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["wahook"]
    files = sorted(LUA.glob("*.lua"))
    assert files
    for path in files:
        relative = path.relative_to(ROOT / "server" / "wahook").as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs), relative


def test_every_lua_file_is_in_a_script() -> None:
    texts = [v for k, v in vars(scripts).items() if k.isupper() and isinstance(v, str)]
    for path in LUA.glob("*.lua"):
        body = path.read_text(encoding="utf-8")
        assert any(body in text for text in texts), path.name
