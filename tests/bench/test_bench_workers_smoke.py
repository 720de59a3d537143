"""bench/bench_workers.py runs (a second of wrk against `serve --workers 2`) so it does not rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_workers.py"


def test_bench_workers_reports_the_parent_and_the_fronts() -> None:
    if shutil.which("wrk") is None:
        print("SKIP reason: wrk is not installed (make bench installs it)")
        pytest.skip("wrk is not installed (make bench installs it)")
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--workers", "2", "--rounds", "1", "--seconds", "1"),
            *("--bodies", "3000", "--connections", "8"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{\n") :])
    two = summary["medians"]["2"]
    assert two["rps"] > 0
    assert two["fronts_us_per_post"] > 0
    assert 0 < two["parent_loop_us_per_post"] <= two["parent_us_per_post"]
    assert two["cpu_us_per_post"] == pytest.approx(
        two["parent_us_per_post"] + two["fronts_us_per_post"], abs=0.2
    )
