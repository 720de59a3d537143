"""The normaliser benchmark runs (a fraction of a second) so it does not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_normalize.py"


def test_bench_normalize_quick_mode_prints_both_batches() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "0.2"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == ["1", "50"]
    for row in rows:
        baseline, events = (float(x.replace(",", "")) for x in row[1:3])
        assert baseline > 0
        assert events > 0
        assert float(row[3]) > 0
