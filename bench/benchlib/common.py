"""Shared pieces of the bench suites: run context, medians, RSS sampling, subscribers, preload."""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import payloads
from benchlib.servers import Server
from benchlib.tools import BENCH, LOAD_CORE, pinned


@dataclass
class Ctx:
    """Everything a suite needs: the secret, the pre-signed bodies and where to put logs."""

    secret: str
    run_id: str
    bodies: Path
    body_count: int
    warm_bodies: Path
    events_per_body: float
    out_dir: Path
    log_dir: Path
    smoke: bool = False


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


class RssSampler:
    """Samples a server's resident size every ``interval`` seconds in a background thread."""

    def __init__(self, server: Server, interval: float = 0.5) -> None:
        self.server = server
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._t0, self.server.rss_mib()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._t0, self.server.rss_mib()))

    def peak(self) -> float:
        return max((r for _, r in self.samples), default=0.0)


class Subscriber:
    """A benchlib.subscriber process on the load core; ``result()`` waits for its JSON."""

    def __init__(self, server: Server, mode: str, group: str, seconds: float, **opts: Any) -> None:
        argv = [sys.executable, "-m", "benchlib.subscriber", mode]
        argv += ["--target", server.grpc_target, "--group", group, "--seconds", str(seconds)]
        for key, value in opts.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        self.proc = subprocess.Popen(
            pinned(LOAD_CORE, argv),
            cwd=BENCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == "READY":
                return
            if not line and self.proc.poll() is not None:
                break
        err = self.proc.stderr.read() if self.proc.stderr else ""
        self.proc.kill()
        raise RuntimeError(f"subscriber did not get ready:\n{err[-2000:]}")

    def stop(self) -> dict[str, Any]:
        """End the subscription now (close its stdin) and return its result."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.result(timeout=30)

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for the subscriber to finish by itself (count reached or ``--seconds``)."""
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        # It prints READY and one JSON line, so its pipes cannot fill while we wait.
        out, err = self.proc.stdout.read(), self.proc.stderr.read()
        if self.proc.returncode != 0:
            raise RuntimeError(f"subscriber failed ({self.proc.returncode}):\n{err[-2000:]}")
        last = [line for line in out.splitlines() if line.startswith("{")][-1]
        parsed: dict[str, Any] = json.loads(last)
        return parsed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def preload(
    server: Server, ctx: Ctx, events: int, per_post: int = 200, workers: int = 4
) -> dict[str, Any]:
    """Store ``events`` distinct statuses through POST /webhook, ``per_post`` per POST (Meta batches
    up to 1000 updates per POST); returns how long it took and any failures."""
    posts = (events + per_post - 1) // per_post
    failures: list[int] = []
    local = threading.local()

    def post(n: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(
                "127.0.0.1", server.http_port, timeout=60
            )
        size = min(per_post, events - n * per_post)
        body = payloads.statuses_body(ctx.run_id, n, size)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": payloads.sign(body, ctx.secret),
        }
        conn.request("POST", "/webhook", body, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            failures.append(resp.status)

    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(post, range(posts)))
    seconds = time.monotonic() - t0
    return {
        "events": events,
        "posts": posts,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds, 1),
        "failures": len(failures),
    }
