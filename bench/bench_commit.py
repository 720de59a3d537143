"""The floor under a durable append on this machine: CPU per one-row SQLite commit.

No wahook code: one table shaped like the event log's (an integer key, two unique text
columns, an indexed time, a ~600-byte blob), WAL, and one ``BEGIN IMMEDIATE; INSERT;
COMMIT`` per row, the least any receiver that makes a webhook durable before its 200
pays per POST when POSTs come one at a time (an open loop at a modest rate: wahook's
group commit then holds ~1.4 POSTs). Four ways, each in a fresh database:

- ``inline``: the commit on the calling thread;
- ``thread``: handed to a writer thread through a queue and waited for, as wahook's
  event loop hands appends to its writer (two thread wake-ups per commit);

each with ``synchronous=FULL`` (an fsync per commit) and with ``OFF`` (none), paced at
``--rate`` commits/s and back to back. Reports CPU (user + system of the process, all
threads) per commit: compare it with wahook's CPU per POST at the same rate in
``make bench``'s open-loop table.

    .venv/bin/python bench/bench_commit.py [--rate 1000] [--commits 3000]
"""

from __future__ import annotations

import argparse
import os
import queue
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

BLOB = os.urandom(600)


def _open(directory: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        Path(directory) / "commit.db", isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(
        "CREATE TABLE events (sequence INTEGER PRIMARY KEY, id TEXT UNIQUE,"
        " dedupe_key TEXT UNIQUE, received_at REAL, data BLOB)"
    )
    conn.execute("CREATE INDEX events_received_at ON events (received_at)")
    return conn


def _commit(conn: sqlite3.Connection, i: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
        (i, f"event-{i:012d}-id", f"dedupe-{i:012d}-key", time.time(), BLOB),
    )
    conn.execute("COMMIT")


def _paced(count: int, rate: float | None, step: Callable[[int], None]) -> float:
    """Run ``step(i)`` ``count`` times, the i-th not before start + i/rate; CPU s used."""
    before = os.times()
    start = time.perf_counter()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        step(i)
    after = os.times()
    return (after.user - before.user) + (after.system - before.system)


def measure(mode: str, synchronous: str, count: int, rate: float | None) -> float:
    """CPU microseconds per commit."""
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as directory:
        conn = _open(directory, synchronous)
        try:
            if mode == "inline":
                cpu = _paced(count, rate, lambda i: _commit(conn, i))
            else:
                jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
                done: queue.SimpleQueue[int] = queue.SimpleQueue()

                def writer() -> None:
                    while (i := jobs.get()) is not None:
                        _commit(conn, i)
                        done.put(i)

                thread = threading.Thread(target=writer)
                thread.start()

                def handed(i: int) -> None:
                    jobs.put(i)
                    done.get()

                try:
                    cpu = _paced(count, rate, handed)
                finally:
                    jobs.put(None)
                    thread.join()
            (rows,) = conn.execute("SELECT count(*) FROM events").fetchone()
            if rows != count:
                raise RuntimeError(f"{mode}/{synchronous}: {rows} rows stored, {count} committed")
        finally:
            conn.close()
    return cpu / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="paced commits/s")
    parser.add_argument("--commits", type=int, default=3000, help="commits per measurement")
    args = parser.parse_args()
    print(f"CPU per one-row commit, us ({args.commits} commits each)")
    print(f"{'mode':<8} {'sync':<5} {f'{args.rate:g}/s':>9} {'max':>9}")
    for synchronous in ("FULL", "OFF"):
        for mode in ("inline", "thread"):
            paced = measure(mode, synchronous, args.commits, args.rate)
            flat_out = measure(mode, synchronous, args.commits, None)
            print(f"{mode:<8} {synchronous:<5} {paced:9.0f} {flat_out:9.0f}")


if __name__ == "__main__":
    main()
