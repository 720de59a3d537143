"""The SQLite writer micro-benchmark runs (a few seconds of load) so it does not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_writer.py"


def test_bench_writer_prints_both_loops() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--posts", "300", "--rate", "500", "--seconds", "1.5"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = {
        (section, line.split()[0]): float(line.split()[1])
        for section, block in zip(("closed", "open"), done.stdout.split("\n\n")[1:], strict=True)
        for line in block.splitlines()[2:]
    }
    assert figures["closed", "writer_ms_per_1k"] > 0
    assert figures["closed", "process_ms_per_1k"] >= figures["closed", "writer_ms_per_1k"]
    assert figures["closed", "jobs_per_commit"] >= 1
    assert 0 < figures["open", "p50_ms"] <= figures["open", "p99_ms"] <= figures["open", "max_ms"]
