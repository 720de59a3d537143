"""`make test`'s coverage gate: each package of wahook keeps at least its branch coverage.

coverage.py's ``--fail-under`` checks one total, which a well-tested package can carry for a
neglected one; this checks every package against its own floor, the integer percent in
pyproject.toml's ``[tool.wahook.coverage-floors]``. A package is a directory under
server/wahook/ (its subpackages count with it); the modules directly in it are "wahook".
Reads the JSON report that ``make test`` writes (``--cov-report=json:PATH``); prints each
package's reading and exits 1 when one is under its floor or has none.

    python tests/coverage_floors.py coverage.json
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import defaultdict
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = "wahook"


def package_of(path: str) -> str:
    """``server/wahook/store/sqlite.py`` → ``store``; ``server/wahook/cli.py`` → ``wahook``."""
    parts = PurePosixPath(path).parts
    inside = parts[max(i for i, part in enumerate(parts) if part == TOP_LEVEL) + 1 :]
    return inside[0] if len(inside) > 1 else TOP_LEVEL


def readings(report: dict[str, object]) -> dict[str, tuple[int, int]]:
    """Per package: (statements and branches covered, statements and branches)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    files = report["files"]
    assert isinstance(files, dict)
    for path, entry in files.items():
        summary = entry["summary"]
        total = totals[package_of(path)]
        total[0] += summary["covered_lines"] + summary.get("covered_branches", 0)
        total[1] += summary["num_statements"] + summary.get("num_branches", 0)
    return {name: (covered, count) for name, (covered, count) in totals.items()}


def check(measured: dict[str, tuple[int, int]], floors: dict[str, int]) -> list[str]:
    """The failures, one line each (none: the gate passes); prints the table."""
    failures = []
    print(f"{'package':<10} {'covered':>16} {'percent':>8} {'floor':>6}")
    for name in sorted(measured.keys() | floors.keys()):
        covered, count = measured.get(name, (0, 0))
        percent = 100.0 * covered / count if count else 100.0
        floor = floors.get(name)
        shown = "-" if floor is None else str(floor)
        print(f"{name:<10} {f'{covered}/{count}':>16} {percent:>7.2f}% {shown:>6}")
        if floor is None:
            failures.append(f"{name}: no floor in [tool.wahook.coverage-floors]; add one")
        elif name not in measured:
            failures.append(f"{name}: has a floor but nothing of it was measured")
        elif covered * 100 < floor * count:  # in integers: no float rounding decides it
            failures.append(f"{name}: {percent:.2f}% is under its floor of {floor}%")
    return failures


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.rstrip().rsplit("\n", 1)[1].strip(), file=sys.stderr)
        return 2
    report = json.loads(Path(argv[1]).read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floors: dict[str, int] = pyproject["tool"]["wahook"]["coverage-floors"]
    failures = check(readings(report), floors)
    for line in failures:
        print(f"coverage gate: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
