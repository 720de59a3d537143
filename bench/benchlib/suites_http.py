"""HTTP-side suites: closed-loop max, open-loop ack latency, ingest while groups read, profile."""

from __future__ import annotations

import collections
import re
import subprocess
import threading
import time
from typing import Any

from benchlib import tools
from benchlib.common import Ctx, Subscriber, median
from benchlib.servers import Server, make_certificate, start


def _warm(server: Server, ctx: Ctx) -> None:
    """A second of load from bodies never used in a measured run, so imports and caches are hot."""
    if ctx.smoke:
        return
    tools.run_wrk(server.url, ctx.warm_bodies, 1)


def throughput(
    ctx: Ctx, servers: list[str], rounds: int, seconds: float, connections: int = 50
) -> dict[str, Any]:
    """wrk at max against each server in turn, a fresh server per run; medians and ratios."""
    per_round: list[dict[str, float]] = []
    errors: dict[str, int] = collections.Counter()
    wrapped: dict[str, int] = collections.Counter()
    for _ in range(rounds):
        row: dict[str, float] = {}
        for kind in servers:
            server = start(kind, ctx.secret, ctx.log_dir)
            try:
                _warm(server, ctx)
                res = tools.run_wrk(server.url, ctx.bodies, seconds, connections)
            finally:
                server.stop()
            row[kind] = round(res["rps"], 1)
            errors[kind] += res["errors"]
            wrapped[kind] += res["wrapped"]
        per_round.append(row)
    medians = {k: round(median([r[k] for r in per_round]), 1) for k in servers}
    ratios = {}
    if medians.get("bare"):
        ratios = {
            f"{k}/bare": round(v / medians["bare"], 3) for k, v in medians.items() if k != "bare"
        }
    return {
        "seconds": seconds,
        "connections": connections,
        "rounds": per_round,
        "median_rps": medians,
        "ratio": ratios,
        "errors": dict(errors),
        "body_reuse": dict(wrapped),
    }


def tls_round(ctx: Ctx, seconds: float, connections: int = 50) -> dict[str, Any]:
    """One closed-loop round over HTTPS (TLS 1.2+, self-signed) for bare Tornado and wahook, next
    to the same over plain HTTP: what TLS costs, which the plain-HTTP figures leave out."""
    tls = make_certificate(ctx.out_dir)
    rps: dict[str, float] = {}
    for kind in ("bare", "wahook"):
        for scheme, cert in (("http", None), ("https", tls)):
            server = start(kind, ctx.secret, ctx.log_dir, cert)
            try:
                _warm(server, ctx)
                res = tools.run_wrk(server.url, ctx.bodies, seconds, connections)
            finally:
                server.stop()
            if res["errors"]:
                raise RuntimeError(f"{kind} over {scheme}: {res['errors']} failed requests")
            rps[f"{kind}_{scheme}"] = round(res["rps"], 1)
    return {
        "seconds": seconds,
        "rps": rps,
        "wahook_https/bare_https": round(rps["wahook_https"] / rps["bare_https"], 3),
        "https/http": {
            k: round(rps[f"{k}_https"] / rps[f"{k}_http"], 3) for k in ("bare", "wahook")
        },
    }


def open_loop(
    ctx: Ctx, servers: list[str], rate: float, seconds: float, warmup: float, rounds: int = 1
) -> dict[str, Any]:
    """Fixed-rate POSTs, latency from the intended send time; medians over rounds."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in servers}
    for _ in range(rounds):
        for kind in servers:
            server = start(kind, ctx.secret, ctx.log_dir)
            try:
                _warm(server, ctx)
                res = tools.run_loadgen(
                    server.url, ctx.bodies, rate, seconds, warmup, 0, ctx.run_id, ctx.secret
                )
            finally:
                server.stop()
            runs[kind].append(res)
    summary: dict[str, Any] = {"rate": rate, "seconds": seconds, "warmup": warmup, "servers": {}}
    for kind, results in runs.items():
        keys = ["p50", "p90", "p99", "p99.9", "max"]
        summary["servers"][kind] = {
            "latency_ms": {
                k: round(median([r["latency_us"][k] for r in results]) / 1000, 3) for k in keys
            },
            "sent": sum(r["sent"] for r in results),
            "ok": sum(r["ok"] for r in results),
            # Transport errors, timeouts and non-200 answers alike.
            "errors": sum(r["sent"] - r["ok"] for r in results),
            "achieved_rate": round(median([r["achieved_rate"] for r in results]), 1),
            "max_send_late_ms": round(max(r["max_send_late_us"] for r in results) / 1000, 3),
        }
    return summary


def ingest_with_groups(
    ctx: Ctx, rounds: int, seconds: float, groups: int = 4, connections: int = 50
) -> dict[str, Any]:
    """wahook's max ingest with no subscriber vs ``groups`` consumer groups each reading live."""
    none_rps: list[float] = []
    with_rps: list[float] = []
    delivered: list[int] = []
    expected: list[float] = []
    for r in range(rounds):
        for readers in (0, groups):
            server = start("wahook", ctx.secret, ctx.log_dir)
            subs: list[Subscriber] = []
            try:
                _warm(server, ctx)
                # Long timers: each is stopped right after the load, however staggered
                # their start-ups were.
                subs = [
                    Subscriber(server, "drain", f"ingest-{r}-{i}", seconds + 120)
                    for i in range(readers)
                ]
                for sub in subs:
                    sub.wait_ready()
                res = tools.run_wrk(server.url, ctx.bodies, seconds, connections)
                time.sleep(0.3)  # the last POSTs' events reach the readers
                results = [s.stop() for s in subs]
            finally:
                for sub in subs:
                    sub.kill()
                server.stop()
            if readers:
                with_rps.append(res["rps"])
                delivered.append(min(x["events"] for x in results))
                expected.append(res["requests"] * ctx.events_per_body)
            else:
                none_rps.append(res["rps"])
    base = median(none_rps)
    loaded = median(with_rps)
    return {
        "seconds": seconds,
        "groups": groups,
        "no_subscriber_rps": round(base, 1),
        "with_groups_rps": round(loaded, 1),
        "ratio": round(loaded / base, 3) if base else 0.0,
        "rounds_no_subscriber": [round(x, 1) for x in none_rps],
        "rounds_with_groups": [round(x, 1) for x in with_rps],
        # Each group reads live; the slowest group's count against what the POSTs carried.
        "min_group_events": delivered,
        "approx_events_posted": [round(x) for x in expected],
    }


_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^)]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "server/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


def parse_collapsed(text: str, top: int = 15) -> dict[str, Any]:
    """Top functions by self and inclusive share of samples in py-spy's raw (collapsed) output."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_short(f) for f in stack.split(";") if f]
        if frames:
            self_counts[frames[-1]] += count
        for f in set(frames):
            incl_counts[f] += count

    def share(c: collections.Counter[str]) -> list[list[Any]]:
        return (
            [[name, round(100 * n / total, 1)] for name, n in c.most_common(top)] if total else []
        )

    ours = collections.Counter({k: v for k, v in incl_counts.items() if "wahook/" in k})
    return {
        "samples": total,
        "self_pct": share(self_counts),
        "inclusive_pct": share(incl_counts),
        # wahook's own functions, inclusive: which stage of the path costs what.
        "wahook_inclusive_pct": share(ours),
    }


def profile(ctx: Ctx, seconds: float) -> dict[str, Any]:
    """py-spy samples wahook (non-blocking, by function) while wrk drives it at max."""
    py_spy = tools.ensure_py_spy()
    server = start("wahook", ctx.secret, ctx.log_dir)
    out = ctx.out_dir / "profile-wahook.txt"
    load: dict[str, Any] = {}

    def drive() -> None:
        load.update(tools.run_wrk(server.url, ctx.bodies, seconds + 2, 50))

    try:
        _warm(server, ctx)
        thread = threading.Thread(target=drive)
        thread.start()
        time.sleep(0.5)
        argv = [py_spy, "record", "--pid", str(server.proc.pid), "--duration", str(round(seconds))]
        argv += ["--rate", "200", "--nonblocking", "--function", "--format", "raw", "-o", str(out)]
        spy = subprocess.run(
            tools.pinned(tools.LOAD_CORE, argv), capture_output=True, text=True, check=False
        )
        thread.join()
    finally:
        server.stop()
    if spy.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed: {spy.stderr.strip()[-500:]}"}
    result = parse_collapsed(out.read_text())
    result["raw_file"] = str(out)
    result["rps_while_profiled"] = round(load.get("rps", 0.0), 1)
    return result
