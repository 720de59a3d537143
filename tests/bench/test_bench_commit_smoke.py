"""The durable-commit floor micro-benchmark runs (a fraction of a second of commits)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_commit.py"


def test_bench_commit_prints_every_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--rate", "2000", "--commits", "50"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = {
        (line.split()[0], line.split()[1]): [float(v) for v in line.split()[2:]]
        for line in done.stdout.splitlines()[2:]
    }
    assert set(rows) == {(m, s) for m in ("inline", "thread") for s in ("FULL", "OFF")}
    # CPU time comes in clock ticks: 50 commits may fit in none, never in a negative count.
    assert all(len(v) == 2 and min(v) >= 0 for v in rows.values())
