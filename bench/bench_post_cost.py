"""What one webhook POST costs a server, counted rather than timed: a fixed number of distinct
signed bodies, sent over ``--connections`` kept-alive connections (one request in flight on
each), and the server's CPU time per POST, by thread (``/proc/<pid>/task/*/stat``), or with
``--callgrind`` the instructions it executed per POST (valgrind's callgrind, every thread,
counted from the first measured request to the last answer).

Instruction counts do not change with the machine's load, so two builds (or two servers) can
be compared on a shared machine where POSTs/s cannot; CPU time per POST changes a little with
load (caches, frequency) but far less than throughput. Alternate the servers for a few rounds.
One caveat of callgrind: ``rep stosb`` (glibc's memset of large blocks) counts one instruction
per byte, so a server that zeroes big buffers (Tornado allocates a zeroed 64 KiB bytearray per
socket read) looks worse by instructions than by time; the memset share is printed apart.
Threads are counted apart too: the main thread's count moves little from run to run, the
SQLite writer's with how many POSTs each group commit took.

Under callgrind a server runs ~40x slower than natively, so a client's next request is often
there already when the server reads its connection again after an answer, which natively it
never is (the client needs the answer first: every next read finds nothing yet). A server
whose cost depends on that order (http.fast_conn waits for the socket to be readable instead
of trying it at once) is counted as it runs natively with ``--pause-ms 3``: each connection
waits that long after an answer before sending its next request (fewer POSTs then share a
group commit, so the writer thread's count rises; compare the same pause only).

    .venv/bin/python bench/bench_post_cost.py [--servers wahook,pywa_async] [--posts 8000]
        [--rounds 3] [--callgrind] [--pause-ms 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import payloads, servers  # noqa: E402
from benchlib.tools import LOAD_CORE  # noqa: E402


async def _drive(port: int, requests: list[bytes], connections: int, pause: float = 0.0) -> int:
    """Send every request, ``connections`` at a time, each connection waiting ``pause``
    seconds after an answer; the number answered other than 200."""
    queue = list(reversed(requests))
    failed = 0

    async def one_connection() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            writer.write(queue.pop())
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await reader.readexactly(int(length[1]) if length else 0)
            failed += not head.startswith(b"HTTP/1.1 200")
            if pause:
                await asyncio.sleep(pause)
        writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return failed


def _requests(path: Path) -> list[bytes]:
    out = []
    for line in path.read_bytes().splitlines():
        signature, _, body = line.partition(b"\t")
        out.append(
            b"POST /webhook HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"X-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (signature, len(body), body)
        )
    return out


def _thread_cpu(pid: int) -> dict[str, float]:
    """utime + stime in seconds of each thread of ``pid``, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        fields = text[text.rindex(")") + 2 :].split()
        out[task.name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def _callgrind_total(dump: Path) -> tuple[int, int]:
    """(all instructions, those in memset) of a callgrind dump."""
    total = memset = 0
    annotate = shutil.which("callgrind_annotate")
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            total = int(line.split()[1])
    if annotate:
        text = subprocess.run(
            [annotate, str(dump)], capture_output=True, text=True, check=False
        ).stdout
        for line in text.splitlines():
            if "memset" in line and line.strip()[:1].isdigit():
                memset += int(line.split()[0].replace(",", ""))
    return total, memset


def measure(
    kind: str,
    secret: str,
    bodies: Path,
    warm: Path,
    connections: int,
    callgrind: Path | None,
    pause: float = 0.0,
) -> dict[str, Any]:
    """One fresh server of ``kind``: warmed, then every body of ``bodies`` sent once."""
    log_dir = Path(tempfile.mkdtemp(prefix="wahook-post-cost-"))
    if callgrind is not None:
        servers.READY_TIMEOUT = 600.0
        servers.SPAWN_PREFIX[:] = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--separate-threads=yes",
            f"--callgrind-out-file={callgrind}/{kind}.%p",
        ]
    try:
        server = servers.start(kind, secret, log_dir)
    finally:
        servers.SPAWN_PREFIX.clear()
    try:
        asyncio.run(_drive(server.http_port, _requests(warm), connections))
        requests = _requests(bodies)
        pid = server.proc.pid
        if callgrind is not None:
            subprocess.run(
                ["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True
            )
        before, t0 = _thread_cpu(pid), time.monotonic()
        failed = asyncio.run(_drive(server.http_port, requests, connections, pause))
        after, wall = _thread_cpu(pid), time.monotonic() - t0
        if callgrind is not None:
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    finally:
        server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    posts = len(requests)
    threads = sorted(
        (round((after[t] - before.get(t, 0.0)) * 1e6 / posts, 1) for t in after), reverse=True
    )
    result: dict[str, Any] = {
        "server": kind,
        "posts": posts,
        "failed": failed,
        "seconds": round(wall, 2),
        "cpu_us_per_post": round(sum(threads), 1),
        "threads_us_per_post": [t for t in threads if t > 0],
    }
    if callgrind is not None:
        # One dump per thread (``<kind>.<pid>.1-<thread>``), the main thread's first.
        counts = [_callgrind_total(d) for d in sorted(callgrind.glob(f"{kind}.{pid}.1-*"))]
        counts = [c for c in counts if c[0]]
        result["instructions_per_post"] = round(sum(c[0] for c in counts) / posts)
        result["memset_instructions_per_post"] = round(sum(c[1] for c in counts) / posts)
        result["threads_instructions_per_post"] = [round(c[0] / posts) for c in counts]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", default="wahook,pywa_async", help="kinds of benchlib.servers")
    p.add_argument("--posts", type=int, default=8000, help="distinct bodies sent per round")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of all servers")
    p.add_argument("--callgrind", action="store_true", help="count instructions (slow: ~40x)")
    p.add_argument(
        "--pause-ms",
        type=float,
        default=0.0,
        help="each connection's wait after an answer (the native order under callgrind)",
    )
    args = p.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(LOAD_CORE)})
    secret = secrets.token_hex(16)
    work = Path(tempfile.mkdtemp(prefix="wahook-post-cost-"))
    warm = work / "warm.txt"
    payloads.write_signed_file(warm, 500, secret, secrets.token_hex(4))
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    try:
        for round_no in range(args.rounds):
            for kind in kinds:
                bodies = work / f"bodies-{round_no}-{kind}.txt"
                payloads.write_signed_file(bodies, args.posts, secret, secrets.token_hex(4))
                cg = work if args.callgrind else None
                res = measure(
                    kind, secret, bodies, warm, args.connections, cg, args.pause_ms / 1000
                )
                print(f"round {round_no + 1} {res}", flush=True)
                if res["failed"]:
                    return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
