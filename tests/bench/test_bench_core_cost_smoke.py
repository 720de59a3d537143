"""bench/bench_core_cost.py runs: every stage of wahook's own per-POST code over a few distinct
signed bodies (the signatures verify, the bodies normalise). Nothing here is about speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_core_cost.py"


def test_bench_core_cost_prints_cpu_per_post_of_each_stage() -> None:
    argv = [sys.executable, str(SCRIPT), "--bodies", "50", "--rounds", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    header, *rows = done.stdout.splitlines()
    assert header.startswith("CPU per POST (us), 50 distinct bench-mix bodies")
    assert [row.split()[0] for row in rows] == ["verify", "normalize", "prepare", "all"]
    # Times come from the thread's clock, whose ticks may be coarse: never negative.
    assert all(float(row.split()[1]) >= 0 for row in rows)


def test_bench_core_cost_internal_pass_runs_one_stage_quietly() -> None:
    # What each callgrind run executes: a signature that did not verify would raise here.
    argv = [sys.executable, str(SCRIPT), "--bodies", "20", "--passes", "2", "--stage", "verify"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""
