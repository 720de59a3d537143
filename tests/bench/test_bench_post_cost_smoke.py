"""bench/bench_post_cost.py runs: a fixed number of POSTs to a fresh wahook, all answered 200,
and CPU per POST read from /proc by thread. Nothing here is about speed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_post_cost.py"


def test_bench_post_cost_counts_cpu_per_post_of_wahook() -> None:
    argv = [sys.executable, str(SCRIPT), "--servers", "wahook", "--posts", "200"]
    argv += ["--rounds", "1", "--connections", "8", "--pause-ms", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (line,) = done.stdout.splitlines()
    assert line.startswith("round 1 ")
    result = ast.literal_eval(line.removeprefix("round 1 "))
    assert (result["server"], result["posts"], result["failed"]) == ("wahook", 200, 0)
    # CPU time comes in clock ticks: 200 POSTs may fit in a few, never in a negative count.
    assert result["cpu_us_per_post"] >= 0
    assert abs(sum(result["threads_us_per_post"]) - result["cpu_us_per_post"]) < 1
