"""make test's per-package coverage gate (tests/coverage_floors.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from coverage_floors import check, package_of, readings

ROOT = Path(__file__).resolve().parents[2]


def report(files: dict[str, tuple[int, int, int, int]]) -> dict[str, object]:
    """A coverage JSON report: per file (covered lines, statements, covered branches,
    branches)."""
    return {
        "files": {
            path: {
                "summary": {
                    "covered_lines": lines,
                    "num_statements": statements,
                    "covered_branches": taken,
                    "num_branches": branches,
                }
            }
            for path, (lines, statements, taken, branches) in files.items()
        }
    }


def test_files_count_with_their_top_package() -> None:
    assert package_of("server/wahook/store/sqlite/writer.py") == "store"
    assert package_of("server/wahook/http/app.py") == "http"
    assert package_of("server/wahook/cli.py") == "wahook"
    assert package_of("/abs/wahook/server/wahook/core/ids.py") == "core"
    measured = readings(
        report(
            {
                "server/wahook/store/a.py": (8, 10, 1, 2),
                "server/wahook/store/sqlite/b.py": (10, 10, 0, 0),
                "server/wahook/cli.py": (1, 2, 0, 0),
            }
        )
    )
    assert measured == {"store": (19, 22), "wahook": (1, 2)}


def test_a_package_under_its_floor_or_without_one_fails() -> None:
    measured = {"core": (100, 100), "store": (899, 1000), "http": (900, 1000), "new": (1, 1)}
    floors = {"core": 100, "store": 90, "http": 90, "gone": 50}
    assert check(measured, floors) == [
        "gone: has a floor but nothing of it was measured",
        "new: no floor in [tool.wahook.coverage-floors]; add one",
        "store: 89.90% is under its floor of 90%",
    ]
    assert check({"core": (99, 100)}, {"core": 100}) == ["core: 99.00% is under its floor of 100%"]


def test_every_floor_is_an_integer_and_core_stays_whole() -> None:
    floors = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["wahook"][
        "coverage-floors"
    ]
    assert floors["core"] == 100
    assert all(type(v) is int and 0 < v <= 100 for v in floors.values())
