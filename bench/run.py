"""`make bench`: runs the wahook benchmark suites, writes bench/results/ and prints the table.

Servers run pinned to core 1, load tools and subscribers to core 0 (this process too). Each suite
catches its own failure so one broken part does not hide the others' figures; the exit code is 1 if
any failed.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import payloads, report, servers, suites_http, suites_sub, tools
from benchlib.common import Ctx

SUITES = [
    "throughput",
    "tls",
    "open_loop",
    "e2e",
    "groups",
    "side_by_side",
    "backlog",
    "soak",
    "profile",
    "normalize",
]
NEEDS_WAHOOK = {"tls", "e2e", "groups", "side_by_side", "backlog", "soak", "profile"}


def fsync_ms(samples: int = 50) -> dict[str, float]:
    """How long one 4 KiB write + fsync takes here: the floor under a durable 200, since wahook
    answers only after its commit is on disk."""
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="wahook-bench-fsync-") as tmp:
        fd = os.open(Path(tmp) / "probe", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(samples):
                t = time.perf_counter()
                os.write(fd, b"x" * 4096)
                os.fsync(fd)
                times.append((time.perf_counter() - t) * 1000)
        finally:
            os.close(fd)
    times.sort()
    return {"p50": round(times[len(times) // 2], 3), "max": round(times[-1], 3)}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        # Other work on the machine during the run shows here (the load average counts
        # runnable processes; ours add about 2 while a load runs).
        "loadavg_start": round(os.getloadavg()[0], 2),
        "fsync_ms": fsync_ms(),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suites", default=",".join(SUITES), help=f"comma list of {SUITES}")
    p.add_argument(
        "--servers",
        default="bare,bare_uvloop,bare_delegate,hmac_json,pywa,express,pywa_async,wahook,"
        "wahook_access_all",
        help="for throughput, which runs `floor` (the do-nothing Go server) only when named here; "
        "open_loop runs `floor` first, then these minus the what-ifs bare_uvloop, bare_delegate, "
        "wahook_access_all",
    )
    p.add_argument("--rounds", type=int, default=3, help="closed-loop rounds per server")
    p.add_argument(
        "--bodies",
        type=int,
        default=None,
        help="distinct signed bodies for the closed-loop runs (default: 9,000 per --seconds, "
        "20,000 to 150,000); a run that sends them all stops early and the report says so",
    )
    p.add_argument("--seconds", type=float, default=6, help="length of one closed-loop run")
    p.add_argument("--rate", type=float, default=1000, help="open-loop POSTs/s")
    p.add_argument(
        "--scaled-rate",
        type=float,
        default=None,
        help="rate of open_loop's second reading (floor, bare, wahook); default: --rate x bare "
        f"Tornado's closed-loop median in this run / {suites_http.REFERENCE_BARE_RPS:g} (the "
        "issue's reference machine), skipped if the throughput suite did not run",
    )
    p.add_argument("--latency-seconds", type=float, default=10)
    p.add_argument("--latency-rounds", type=int, default=1)
    p.add_argument("--warmup", type=float, default=2, help="unmeasured start of open-loop runs")
    p.add_argument("--group-rounds", type=int, default=2)
    p.add_argument(
        "--groups", type=int, default=4, help="consumer groups reading in `groups`, `side_by_side`"
    )
    p.add_argument(
        "--side-by-side-aa",
        action="store_true",
        help="side_by_side also runs wahook against wahook: the instrument's own spread",
    )
    p.add_argument(
        "--pair",
        metavar="BASE,CANDIDATE",
        help="side_by_side runs only these two server kinds against each other (e.g. "
        "wahook_asyncio,wahook): a before/after of one change",
    )
    p.add_argument("--backlog", type=int, default=200_000, help="events; the target is 1000000")
    p.add_argument("--soak-seconds", type=float, default=60, help="the target is 600")
    p.add_argument("--soak-rate", type=float, default=500)
    p.add_argument("--profile-seconds", type=float, default=10)
    p.add_argument("--out", type=Path, default=tools.BENCH / "results")
    p.add_argument("--smoke", action="store_true", help="about a second of each load (tests)")
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.rate, args.latency_seconds = 1, 1, 200, 1
        args.warmup, args.group_rounds, args.groups, args.backlog = 0, 1, 2, 2000
        args.soak_seconds, args.soak_rate, args.profile_seconds = 1, 100, 1
        args.bodies = args.bodies or 2000
    return args


_WHAT_IFS = ("bare_uvloop", "bare_delegate", "wahook_access_all")


def open_loop_servers(names: list[str]) -> list[str]:
    """open_loop's servers: the floor first, in every run (the latency rows are read against
    it), then the named ones but the closed-loop what-ifs, whose latency adds little."""
    return ["floor", *(n for n in names if n not in _WHAT_IFS and n != "floor")]


def run_suite(
    name: str, ctx: Ctx, args: argparse.Namespace, names: list[str], done: dict[str, Any]
) -> dict[str, Any]:
    """Runs suite ``name``; ``done`` holds the results of the suites that ran before it."""
    if name == "throughput":
        return suites_http.throughput(ctx, names, args.rounds, args.seconds)
    if name == "tls":
        return suites_http.tls_round(ctx, args.seconds)
    if name == "open_loop":
        latency_names = open_loop_servers(names)
        timing = (args.latency_seconds, args.warmup, args.latency_rounds)
        summary = suites_http.open_loop(ctx, latency_names, args.rate, *timing)
        bare_rps = (done.get("throughput") or {}).get("median_rps", {}).get("bare")
        summary["scaled"] = suites_http.open_loop_scaled(
            ctx, latency_names, args.rate, *timing, bare_rps=bare_rps, forced=args.scaled_rate
        )
        return summary
    if name == "e2e":
        return suites_sub.e2e_latency(ctx, args.rate, args.latency_seconds, args.warmup)
    if name == "groups":
        return suites_http.ingest_with_groups(ctx, args.group_rounds, args.seconds, args.groups)
    if name == "side_by_side":
        return suites_http.side_by_side(
            ctx,
            args.rounds,
            args.seconds,
            args.groups,
            aa=args.side_by_side_aa,
            vs_pywa_async="pywa_async" in names,
            pair=tuple(args.pair.split(",", 1)) if args.pair else None,  # type: ignore[arg-type]
        )
    if name == "backlog":
        return suites_sub.backlog(ctx, args.backlog)
    if name == "soak":
        return suites_sub.soak(ctx, args.soak_rate, args.soak_seconds)
    if name == "profile":
        return suites_http.profile(ctx, args.profile_seconds)
    if name == "normalize":
        return suites_sub.normalize(ctx)
    raise ValueError(f"unknown suite {name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The orchestrator (preloading, sampling) belongs with the load, off the server's core.
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(tools.LOAD_CORE)})
    wanted = [s.strip() for s in args.suites.split(",") if s.strip()]
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    out: Path = args.out
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    log_dir = out / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    # Server logs hold an access line per request (tens of MB a run): keep the last three runs.
    for old in sorted((out / "logs").iterdir())[:-3]:
        shutil.rmtree(old, ignore_errors=True)

    has_wahook = servers.wahook_available()
    if not has_wahook:
        print("bench: `wahook serve` is not available; running the baselines only", flush=True)
        names = [n for n in names if n != "wahook"]
        wanted = [s for s in wanted if s not in NEEDS_WAHOOK]

    tools.ensure_wrk()
    tools.ensure_loadgen()
    secret = secrets.token_hex(16)
    run_id = secrets.token_hex(4)
    bodies = out / "bodies.txt"
    # Enough distinct bodies that a closed-loop run at ~9,000 POSTs/s never repeats one; a
    # faster machine's runs stop when they are used up (signed_bodies.lua) and say so.
    count = args.bodies or int(min(150_000, max(20_000, 9_000 * args.seconds)))
    t0 = time.monotonic()
    mix = payloads.write_signed_file(bodies, count, secret, run_id)
    warm = out / "bodies-warmup.txt"
    payloads.write_signed_file(warm, 1000 if args.smoke else 10_000, secret, secrets.token_hex(4))
    print(f"bench: {count} signed bodies in {time.monotonic() - t0:.1f}s, mix {mix}", flush=True)

    ctx = Ctx(
        secret=secret,
        run_id=run_id,
        bodies=bodies,
        body_count=count,
        warm_bodies=warm,
        events_per_body=payloads.events_per_body(mix),
        out_dir=out,
        log_dir=log_dir,
        smoke=args.smoke,
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "smoke": args.smoke,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "mix": mix,
        "errors": {},
    }
    for name in wanted:
        t = time.monotonic()
        print(f"bench: {name} ...", flush=True)
        try:
            results[name] = run_suite(name, ctx, args, names, results)
        except Exception as exc:
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        print(f"bench: {name} done in {time.monotonic() - t:.0f}s", flush=True)

    results["machine"]["loadavg_end"] = round(os.getloadavg()[0], 2)
    results["machine"]["minutes"] = round((time.monotonic() - t0) / 60, 1)
    table = report.render(results)
    (out / f"results-{stamp}.json").write_text(json.dumps(results, indent=2))
    (out / f"results-{stamp}.md").write_text(table)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    (out / "latest.md").write_text(table)
    print(table)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
