"""Micro-benchmark of the SQLite event log's write path alone: ``SqliteEventLog.append``.

No HTTP: the bench payload mix (``benchlib.payloads``: 35% single statuses, 5% POSTs of
3 statuses, 60% single messages) is normalised once up front, outside the timing, and
each POST's events are appended as the webhook handler does, on a fresh log in a temp
directory on the same disk as the checkout (fsyncs are real).

- closed loop: ``--concurrency`` coroutines (50, like wrk's connections) append
  ``--posts`` bodies as fast as the writer takes them. Reports CPU per 1,000 events of
  the whole process and of the writer thread (``time.thread_time`` read by a job that
  runs on the writer thread), commits and jobs per commit. CPU time, not wall time: the
  machine is shared.
- open loop: one append is submitted every 1/``--rate`` s whether or not earlier ones
  have finished; latency is from the intended submit time to the future resolving
  (no coordinated omission); p50/p99/p99.9/max after a 1 s warm-up.

``--compare DIR`` runs every round twice, alternating, in fresh processes: once with
this checkout's ``server/`` and once with ``DIR`` (another checkout's ``server/``,
e.g. a ``git worktree`` of an older commit), and prints the medians and the ratio.

    .venv/bin/python bench/bench_writer.py [--posts N] [--rate R] [--compare DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _import_path(argv: list[str]) -> None:
    # Before wahook is imported: --src picks which checkout's server/ is measured.
    if "--src" in argv:
        sys.path.insert(0, argv[argv.index("--src") + 1])


_import_path(sys.argv)

from benchlib import payloads  # noqa: E402
from wahook.core.normalize import normalize  # noqa: E402
from wahook.store.sqlite import SqliteEventLog  # noqa: E402
from wahook.v1 import event_pb2  # noqa: E402

Post = list[event_pb2.Event]


def make_posts(count: int, run: str) -> list[Post]:
    """``count`` distinct POSTs of the bench mix, normalised (outside any timing)."""
    received = float(payloads.BASE_TS)
    return [
        normalize(body, received + n / 1000)
        for n, (_, body) in enumerate(payloads.generate(count, run))
    ]


async def _writer_cpu(log: SqliteEventLog) -> float:
    # A job runs on the writer thread: thread_time there is that thread's CPU alone.
    return await log._write(lambda _conn: time.thread_time())


async def closed_loop(log: SqliteEventLog, posts: list[Post], concurrency: int) -> dict[str, Any]:
    it = iter(posts)

    async def worker() -> None:
        for events in it:
            await log.append(events)

    before = log.metrics()
    w0 = await _writer_cpu(log)
    p0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    p1, t1 = time.process_time(), time.perf_counter()
    w1 = await _writer_cpu(log)
    after = log.metrics()
    events = sum(len(p) for p in posts)
    commits = after.commits - before.commits - 1  # the _writer_cpu job's own commit
    jobs = after.write_jobs - before.write_jobs - 1
    return {
        "events": events,
        "process_ms_per_1k": (p1 - p0) * 1e6 / events,
        "writer_ms_per_1k": (w1 - w0) * 1e6 / events,
        "events_per_wall_s": events / (t1 - t0),
        "commits": commits,
        "jobs_per_commit": jobs / max(commits, 1),
    }


async def open_loop(
    log: SqliteEventLog, posts: list[Post], rate: float, warmup: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    start = loop.time() + 0.01
    measured_from = start + warmup

    async def one(events: Post, intended: float) -> None:
        await log.append(events)
        if intended >= measured_from:
            latencies.append(loop.time() - intended)

    before = log.metrics()
    w0 = await _writer_cpu(log)
    p0 = time.process_time()
    measured_events = 0
    for i, events in enumerate(posts):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(events, intended)))
        if intended >= measured_from:
            measured_events += len(events)
    await asyncio.gather(*tasks)
    p1 = time.process_time()
    w1 = await _writer_cpu(log)
    after = log.metrics()
    events = sum(len(p) for p in posts)
    commits = after.commits - before.commits - 1
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "appends": len(latencies),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": latencies[-1] * 1000,
        "process_ms_per_1k": (p1 - p0) * 1e6 / events,
        "writer_ms_per_1k": (w1 - w0) * 1e6 / events,
        "jobs_per_commit": (after.write_jobs - before.write_jobs - 1) / max(commits, 1),
    }


async def one_round(args: argparse.Namespace) -> dict[str, Any]:
    run = f"W{os.getpid()}"
    warm = make_posts(500, run + "w")
    closed = make_posts(args.posts, run + "c")
    opened = make_posts(int(args.rate * args.seconds), run + "o")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-writer-") as tmp:
        log = await SqliteEventLog.open(Path(tmp) / "events.sqlite3")
        try:
            await closed_loop(log, warm, args.concurrency)
            result: dict[str, Any] = {}
            if args.mode in ("closed", "both"):
                result["closed"] = await closed_loop(log, closed, args.concurrency)
            if args.mode in ("open", "both"):
                result["open"] = await open_loop(log, opened, args.rate, args.warmup)
        finally:
            await log.close()
    return result


def _print(results: dict[str, list[dict[str, Any]]], keys: dict[str, list[str]]) -> None:
    names = list(results)
    for section, fields in keys.items():
        rounds = [r[section] for r in results[names[0]] if section in r]
        if not rounds:
            continue
        print(f"\n{section} loop (median of {len(rounds)} rounds)")
        header = f"{'':>20}" + "".join(f"{n:>14}" for n in names)
        if len(names) == 2:
            header += f"{'ratio':>9}"
        print(header)
        for field in fields:
            meds = [statistics.median(r[section][field] for r in results[n]) for n in names]
            line = f"{field:>20}" + "".join(f"{m:>14.3f}" for m in meds)
            if len(names) == 2:
                line += f"{meds[0] / meds[1] if meds[1] else float('nan'):>9.3f}"
            print(line)


KEYS = {
    "closed": [
        "process_ms_per_1k",
        "writer_ms_per_1k",
        "events_per_wall_s",
        "commits",
        "jobs_per_commit",
    ],
    "open": [
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "process_ms_per_1k",
        "writer_ms_per_1k",
        "jobs_per_commit",
    ],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=("closed", "open", "both"), default="both")
    parser.add_argument("--posts", type=int, default=6000, help="closed loop POSTs (6000)")
    parser.add_argument("--concurrency", type=int, default=50, help="closed loop (50)")
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop POSTs/s (1000)")
    parser.add_argument("--seconds", type=float, default=6.0, help="open loop length (6)")
    parser.add_argument("--warmup", type=float, default=1.0, help="open loop, not measured (1)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dir", default=None, help="where the temp log goes (default: TMPDIR)")
    parser.add_argument("--src", default=None, help="the server/ directory to import wahook from")
    parser.add_argument("--compare", default=None, metavar="DIR", help="another server/ dir")
    parser.add_argument("--json", action="store_true", help="one round, JSON out (internal)")
    args = parser.parse_args(argv)

    if args.json:
        print(json.dumps(asyncio.run(one_round(args))))
        return 0
    src = args.src or str(HERE.parent / "server")
    variants = {"this": src}
    if args.compare:
        variants["compare"] = args.compare
    passthrough = [
        *("--mode", args.mode, "--posts", str(args.posts), "--rate", str(args.rate)),
        *("--seconds", str(args.seconds), "--warmup", str(args.warmup)),
        *("--concurrency", str(args.concurrency)),
        *(("--dir", args.dir) if args.dir else ()),
    ]
    print(
        f"SQLite writer micro-benchmark: closed loop {args.posts} POSTs x{args.concurrency},"
        f" open loop {args.rate:g}/s for {args.seconds:g} s; {args.rounds} round(s)"
        f"{', alternating with ' + args.compare if args.compare else ''}"
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, path in variants.items():
            done = subprocess.run(
                [sys.executable, __file__, "--json", "--src", path, *passthrough],
                capture_output=True,
                text=True,
                check=True,
            )
            results[name].append(json.loads(done.stdout))
    _print(results, KEYS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
