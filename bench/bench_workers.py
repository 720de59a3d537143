"""`wahook serve --workers N` under wrk: POSTs/s and CPU per POST of every process, N by N.

For each N in ``--workers`` (default 1,2), in alternating rounds, a fresh `wahook serve`
(SQLite, plain HTTP, ``WAHOOK_WORKERS=N``) is loaded by wrk at max with distinct signed
bodies from the bench mix (``benchlib.payloads``), ``--connections`` connections. Nothing is
pinned: wrk and every wahook process share the machine's cores, as they would on a box with
no spare core for the load. Each round reports POSTs/s and CPU seconds per POST of the parent
(event log, writer thread, gRPC) and of the fronts together, read from /proc before and after
the run; the medians per N are printed as JSON.

The writer's own ceiling (commits/s, rows/s with no HTTP) is bench/bench_writer.py's.

    .venv/bin/python bench/bench_workers.py [--workers 1,2] [--rounds 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import payloads, servers, tools  # noqa: E402
from benchlib.servers import _children  # noqa: E402
from benchlib.suites_http import _cpu_seconds  # noqa: E402


def _cpu(parent: int) -> tuple[float, float, float]:
    """(the parent's CPU seconds, its main thread's (the loop), its children's together)."""
    main = _cpu_seconds(parent, f"/proc/{parent}/task/{parent}/stat")
    return _cpu_seconds(parent), main, sum(_cpu_seconds(k) for k in _children(parent))


def one_round(
    n: int, bodies: Path, warm: Path, secret: str, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    server = servers.start_wahook(secret, logs, extra_env={"WAHOOK_WORKERS": str(n)}, pin=False)
    try:
        pid = server.proc.pid
        if n > 1:
            assert len(_children(pid)) == n, "the fronts are not all running"
        tools.run_wrk(server.url, warm, 1, args.connections, pin=False)
        p0, m0, f0 = _cpu(pid)
        res = tools.run_wrk(server.url, bodies, args.seconds, args.connections, pin=False)
        p1, m1, f1 = _cpu(pid)
    finally:
        server.stop()
    posts = res["requests"] - res["errors"]
    if res["errors"] or not posts:
        raise RuntimeError(f"workers={n}: {res['errors']} errors of {res['requests']}")
    parent, main, fronts = p1 - p0, m1 - m0, f1 - f0
    return {
        "workers": n,
        "rps": round(res["rps"], 1),
        "posts": posts,
        "cpu_us_per_post": round((parent + fronts) * 1e6 / posts, 1),
        "parent_us_per_post": round(parent * 1e6 / posts, 1),
        # The parent's event loop alone; the rest of the parent is the SQLite writer thread
        # (and gRPC's, idle here).
        "parent_loop_us_per_post": round(main * 1e6 / posts, 1),
        "fronts_us_per_post": round(fronts * 1e6 / posts, 1),
        "bodies_ran_out": res["bodies_ran_out"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2", help="comma-separated N to compare")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--bodies", type=int, default=0, help="distinct bodies a round (default: ample)")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    secret = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="wahook-bench-workers-") as tmp:
        work = Path(tmp)
        logs = work / "logs"
        logs.mkdir()
        per_body = args.bodies or int(max(20_000, 15_000 * args.seconds))
        warm = work / "warm.txt"
        payloads.write_signed_file(warm, 5_000, secret, secrets.token_hex(4))
        rows: list[dict[str, Any]] = []
        for r in range(args.rounds):
            for n in counts:
                bodies = work / f"bodies-{r}-{n}.txt"
                payloads.write_signed_file(bodies, per_body, secret, secrets.token_hex(4))
                row = one_round(n, bodies, warm, secret, args, logs)
                print(json.dumps(row), flush=True)
                rows.append(row)
                bodies.unlink()
    summary: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "connections": args.connections,
        "seconds": args.seconds,
        "medians": {},
    }
    for n in counts:
        mine = [r for r in rows if r["workers"] == n]
        summary["medians"][str(n)] = {
            k: round(statistics.median(r[k] for r in mine), 1)
            for k in (
                "rps",
                "cpu_us_per_post",
                "parent_us_per_post",
                "parent_loop_us_per_post",
                "fronts_us_per_post",
            )
        }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
