"""The subscriber- and memory-side suites: end-to-end latency, backlog with a stalled subscriber and
catch-up, RSS over a soak, and the core engineer's normaliser micro-benchmark."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

from benchlib import tools
from benchlib.common import Ctx, RssSampler, Subscriber, preload
from benchlib.servers import start
from benchlib.suites_http import loadgen_with_cpu


def e2e_latency(ctx: Ctx, rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    """Open-loop POSTs at ``rate``; a subscriber measures arrival - event.received_time. Also
    wahook's CPU per POST and share of core 1 meanwhile, and how late the load tool sent."""
    server = start("wahook", ctx.secret, ctx.log_dir)
    try:
        sub = Subscriber(server, "latency", "e2e-probe", seconds + 120, warmup=warmup)
        try:
            sub.wait_ready()
            load = loadgen_with_cpu(server, ctx, rate, seconds, warmup)
            time.sleep(0.3)  # the last POSTs' events reach the probe
            probe = sub.stop()
        finally:
            sub.kill()
    finally:
        server.stop()
    return {
        "rate": rate,
        "seconds": seconds,
        "subscriber_latency_ms": probe["latency_ms"],
        "events_measured": probe["measured"],
        "events_delivered": probe["events"],
        "mean_batch": probe["mean_batch"],
        "ack_latency_ms": {k: round(v / 1000, 3) for k, v in load["latency_us"].items()},
        "post_errors": load["sent"] - load["ok"],
        # The subscriber's gRPC stream is served by the same process: its cost is in here.
        "cpu_us_per_post": load["cpu_us_per_post"],
        "core_share": load["core_share"],
        "core_busy": load["core_busy"],
        "send_late_ms": {k: round(v / 1000, 3) for k, v in load["send_late_us"].items()},
    }


def backlog(ctx: Ctx, events: int, per_post: int = 200) -> dict[str, Any]:
    """A stalled subscriber holds a stream open while ``events`` are stored; RSS sampled throughout.
    Then fresh groups catch up on the whole backlog: server default batch and the maximum (4096)."""
    server = start("wahook", ctx.secret, ctx.log_dir)
    result: dict[str, Any] = {"events": events}
    subs: list[Subscriber] = []
    try:
        rss_idle = server.rss_mib()
        with RssSampler(server) as sampler:
            stalled = Subscriber(server, "stall", "stalled", 3600)
            subs.append(stalled)
            stalled.wait_ready()
            result["preload"] = preload(server, ctx, events, per_post)
            time.sleep(0 if ctx.smoke else 2)  # let the server settle before measuring
            result["rss_mib_after_backlog"] = round(server.rss_mib(), 1)
            result["rss_mib_peak_while_storing"] = round(sampler.peak(), 1)
            catchups = {}
            runs = (("default_batch", 0), ("batch_4096", 4096))
            for label, batch in runs[:1] if ctx.smoke else runs:
                sub = Subscriber(
                    server,
                    "catchup",
                    f"catchup-{label}",
                    600,
                    count=events,
                    batch=batch,
                    # Acks come back once per batch; a small in-flight cap would make the
                    # catch-up wait on ack round trips instead of measuring delivery.
                    max_in_flight=100_000,
                )
                subs.append(sub)
                sub.wait_ready()
                catchups[label] = sub.result(timeout=900)
        result["rss_mib_idle"] = round(rss_idle, 1)
        result["rss_mib_peak"] = round(sampler.peak(), 1)
        result["catchup"] = catchups
    finally:
        for sub in subs:
            sub.kill()
        server.stop()
    return result


def soak(ctx: Ctx, rate: float, seconds: float) -> dict[str, Any]:
    """Open-loop POSTs at ``rate`` for ``seconds`` (distinct bodies throughout); RSS every second.
    Flatness compares the end with the size once warmed up (after the first sixth, at most 60 s)."""
    server = start("wahook", ctx.secret, ctx.log_dir)
    try:
        with RssSampler(server, interval=1.0) as sampler:
            load = tools.run_loadgen(
                server.url, ctx.bodies, rate, seconds, 0, 0, ctx.run_id, ctx.secret
            )
    finally:
        server.stop()
    samples = sampler.samples
    warm_t = min(seconds / 6, 60.0)
    warm = next((r for t, r in samples if t >= warm_t), samples[0][1])
    end = samples[-1][1]
    after = [(t, r) for t, r in samples if t >= warm_t]
    return {
        "slope_mib_per_min": round(_slope(after) * 60, 3),
        "rate": rate,
        "seconds": seconds,
        "rss_mib_start": round(samples[0][1], 1),
        "rss_mib_warm": round(warm, 1),
        "rss_mib_end": round(end, 1),
        "rss_mib_peak": round(sampler.peak(), 1),
        "growth_after_warmup_pct": round(100 * (end - warm) / warm, 1) if warm else 0.0,
        "post_errors": load["sent"] - load["ok"],
        "ack_latency_ms": {k: round(v / 1000, 3) for k, v in load["latency_us"].items()},
        "series_mib": [round(r, 1) for _, r in samples[:: max(1, len(samples) // 60)]],
    }


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (MiB per second) of RSS after warm-up: a leak shows as a steady climb
    even when the end point happens to land on a low sample."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (r - mr) for t, r in points) / var if var else 0.0


def normalize(ctx: Ctx) -> dict[str, Any]:
    """Runs bench/bench_normalize.py (the core engineer's) on the server core; keeps its figure."""
    script = tools.BENCH / "bench_normalize.py"
    if not script.exists():
        return {"error": "bench/bench_normalize.py not present"}
    proc = subprocess.run(
        tools.pinned(tools.SERVER_CORE, [sys.executable, str(script), "--seconds", "2"]),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tools.REPO,
    )
    output = (proc.stdout + proc.stderr).strip()
    # Its table: batch, json.loads items/s, normalize events/s, ratio.
    row = re.compile(r"^\s*(\d+)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)\s*$")
    by_batch: dict[str, float] = {}
    for line in output.splitlines():
        m = row.match(line)
        if m:
            by_batch[m[1]] = float(m[3].replace(",", ""))
    return {
        "returncode": proc.returncode,
        "events_per_s_by_batch": by_batch,
        "events_per_s": by_batch.get("1"),
        "output": output[-1500:],
    }
