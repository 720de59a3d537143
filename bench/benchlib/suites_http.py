"""HTTP-side suites: closed-loop max, open-loop ack latency, ingest while groups read, two
servers side by side on one core (CPU per POST), profile."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import threading
import time
from pathlib import Path
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
    ran_out: dict[str, int] = collections.Counter()
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
            ran_out[kind] += res["bodies_ran_out"]
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
        # Runs that ended early, every body sent once (a faster machine than the body count
        # was sized for): their rate is over the time they ran.
        "bodies_ran_out": {k: v for k, v in ran_out.items() if v},
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


# Bare Tornado's closed-loop POSTs/s on issue 5's reference machine, where the targets were set
# for 1,000 POSTs/s. Scaled by bare's median on this machine, that rate loads a server's core as
# much here as 1,000/s did there (this VM: ~2,300/s bare, so ~370/s).
REFERENCE_BARE_RPS = 6300.0
# The scaled reading's servers: the floor, the do-nothing Python receiver, wahook.
SCALED_SERVERS = ("floor", "bare", "wahook")


def loadgen_with_cpu(
    server: Server, ctx: Ctx, rate: float, seconds: float, warmup: float
) -> dict[str, Any]:
    """The loadgen's result against ``server``, plus what the server spent: utime + stime of its
    serving process, all threads, read just before and just after the loadgen run, per POST sent
    (``cpu_us_per_post``) and per wall second (``core_share``, its share of core 1); and how busy
    core 1 was meanwhile, whoever used it (``core_busy``: above the share is other work, which
    the server's requests queued behind)."""
    pid = _serving_pid(server)
    core0 = _core_ticks(tools.SERVER_CORE)
    cpu0, t0 = _tree_cpu_seconds(pid), time.monotonic()
    res = tools.run_loadgen(
        server.url, ctx.bodies, rate, seconds, warmup, 0, ctx.run_id, ctx.secret
    )
    cpu, wall = _tree_cpu_seconds(pid) - cpu0, time.monotonic() - t0
    busy, total = (b - a for a, b in zip(core0, _core_ticks(tools.SERVER_CORE), strict=True))
    res["core_busy"] = round(busy / total, 3) if total else 0.0
    res["server_cpu_s"] = round(cpu, 3)
    res["wall_s"] = round(wall, 3)
    res["cpu_us_per_post"] = round(cpu * 1e6 / res["sent"], 1) if res["sent"] else 0.0
    res["core_share"] = round(cpu / wall, 3) if wall else 0.0
    return res


def open_loop(
    ctx: Ctx, servers: list[str], rate: float, seconds: float, warmup: float, rounds: int = 1
) -> dict[str, Any]:
    """Fixed-rate POSTs, latency from the intended send time, each server's CPU during the run
    and how late the load tool sent; medians over rounds."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in servers}
    for _ in range(rounds):
        for kind in servers:
            server = start(kind, ctx.secret, ctx.log_dir)
            try:
                _warm(server, ctx)
                res = loadgen_with_cpu(server, ctx, rate, seconds, warmup)
            finally:
                server.stop()
            runs[kind].append(res)
    summary: dict[str, Any] = {"rate": rate, "seconds": seconds, "warmup": warmup, "servers": {}}
    for kind, results in runs.items():
        keys = ["p50", "p90", "p99", "p99.9", "max"]
        late_keys = ["p50", "p99", "p99.9", "max"]
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
            # How late the measured requests left the load tool: inside every latency above.
            "send_late_ms": {
                k: round(median([r["send_late_us"][k] for r in results]) / 1000, 3)
                for k in late_keys
            },
            "cpu_us_per_post": round(median([r["cpu_us_per_post"] for r in results]), 1),
            "core_share": round(median([r["core_share"] for r in results]), 3),
            "core_busy": round(median([r["core_busy"] for r in results]), 3),
        }
    return summary


def scaled_rate(rate: float, bare_rps: float) -> float:
    """``rate`` x this machine's bare Tornado closed-loop POSTs/s / the reference machine's,
    rounded to 10/s (at least 10): the rate that loads a core here as ``rate`` did there."""
    return float(max(10, round(rate * bare_rps / REFERENCE_BARE_RPS / 10) * 10))


def open_loop_scaled(
    ctx: Ctx,
    servers: list[str],
    rate: float,
    seconds: float,
    warmup: float,
    rounds: int,
    bare_rps: float | None,
    forced: float | None = None,
) -> dict[str, Any]:
    """The open-loop reading again at the scaled rate (``scaled_rate``, or ``forced``) for the
    floor, bare Tornado and wahook: the same utilisation as the issue's machine at ``rate``.
    Shown next to the target rows, which stay judged at ``rate``. Without a forced rate it needs
    bare's closed-loop median of this run; ``{"skipped": reason}`` when there is none."""
    basis: dict[str, Any] = {"target_rate": rate, "reference_bare_rps": REFERENCE_BARE_RPS}
    if forced:
        scaled, basis["forced"] = float(forced), True
    elif bare_rps:
        scaled, basis["bare_closed_loop_rps"] = scaled_rate(rate, bare_rps), bare_rps
    else:
        return {
            "skipped": "no closed-loop median of bare Tornado to scale by: the throughput suite "
            "did not run before open_loop, or ran without bare; --scaled-rate N forces a rate"
        }
    names = [k for k in SCALED_SERVERS if k in servers]
    summary = open_loop(ctx, names, scaled, seconds, warmup, rounds)
    summary["basis"] = basis
    return summary


def ingest_with_groups(
    ctx: Ctx, rounds: int, seconds: float, groups: int = 4, connections: int = 50
) -> dict[str, Any]:
    """wahook's max ingest with no subscriber vs ``groups`` consumer groups each reading live."""
    none_rps: list[float] = []
    with_rps: list[float] = []
    delivered: list[int] = []
    expected: list[float] = []
    ran_out = 0
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
                ran_out += res["bodies_ran_out"]
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
        "bodies_ran_out": ran_out,
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


# Side by side: both servers on the server core at the same time, each driven by its own wrk
# with half the connections. Run one after the other, two runs of the same server on this
# shared VM differ by +-10% (other sessions' work lands on one run and not the other); run
# together, both see the same noise and the kernel shares the core fairly between them, so the
# CPU each spends per POST compares to about +-1% (A/A, measured: bench/README.md).

_WRAPPERS = {"taskset", "sh", "bash", "dash", "env"}


def _serving_pid(server: Server) -> int:
    """The pid of the process that serves: ``server.proc`` itself unless it is a wrapper (a
    shell, taskset before its exec) with one child, which is then followed."""
    pid = server.proc.pid
    while Path(f"/proc/{pid}/comm").read_text().strip() in _WRAPPERS:
        kids = [
            int(k)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for k in (task / "children").read_text().split()
        ]
        if len(kids) != 1:
            raise RuntimeError(f"{server.name}: wrapper pid {pid} has children {kids}")
        pid = kids[0]
    return pid


def _cpu_seconds(pid: int, stat: str = "") -> float:
    """utime + stime of a process, all its threads included (/proc/<pid>/stat fields 14, 15);
    of one thread with ``stat`` /proc/<pid>/task/<tid>/stat."""
    text = Path(stat or f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: count from after it.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of a server and every process under it (``--workers``' fronts): for each, utime +
    stime of its threads plus cutime + cstime, the CPU of children it has reaped (a front that
    died and was restarted)."""
    total, todo = 0.0, [pid]
    while todo:
        one = todo.pop()
        try:
            text = Path(f"/proc/{one}/stat").read_text()
            kids = [
                int(k)
                for task in Path(f"/proc/{one}/task").iterdir()
                for k in (task / "children").read_text().split()
            ]
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        todo += kids
    return total


def _core_ticks(core: str) -> tuple[int, int]:
    """(busy, total) clock ticks of one core from /proc/stat (the whole machine's line if the
    core has none); idle and iowait count as not busy."""
    label = f"cpu{core}" if (os.cpu_count() or 1) > int(core) else "cpu"
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == label:
            ticks = [int(x) for x in parts[1:]]
            total = sum(ticks[:8])  # guest time is already inside user
            return total - ticks[3] - ticks[4], total
    raise RuntimeError(f"no {label} line in /proc/stat")


def _sbs_bodies(ctx: Ctx, rounds: int) -> list[Path]:
    """One slice of the run's bodies per round: the servers live through every round, and a
    body sent twice to one wahook would take its dedupe shortcut."""
    lines = ctx.bodies.read_bytes().splitlines(keepends=True)
    size = max(1, len(lines) // rounds)
    paths = []
    for r in range(rounds):
        path = ctx.out_dir / f"bodies-side-by-side-{r}.txt"
        path.write_bytes(b"".join(lines[r * size : (r + 1) * size]))
        paths.append(path)
    return paths


def _duel_round(
    sides: dict[str, Server], bodies: Path, seconds: float, connections: int
) -> dict[str, Any]:
    """One round: a wrk per server, started together, ``connections`` each; each server's CPU
    seconds from just before the start to just after both wrks end."""
    pids = {name: _serving_pid(server) for name, server in sides.items()}
    results: dict[str, dict[str, Any]] = {}
    failures: list[BaseException] = []

    def drive(name: str) -> None:
        try:
            results[name] = tools.run_wrk(sides[name].url, bodies, seconds, connections)
        except BaseException as exc:  # re-raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=drive, args=(name,)) for name in sides]
    core0 = _core_ticks(tools.SERVER_CORE)
    cpu0 = {name: _tree_cpu_seconds(pid) for name, pid in pids.items()}
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu1 = {name: _tree_cpu_seconds(pid) for name, pid in pids.items()}
    core1 = _core_ticks(tools.SERVER_CORE)
    if failures:
        raise failures[0]
    busy, total = (b - a for a, b in zip(core0, core1, strict=True))
    core_seconds = total / os.sysconf("SC_CLK_TCK")
    row: dict[str, Any] = {}
    for name in sides:
        res = results[name]
        if res["errors"] or not res["requests"]:
            raise RuntimeError(f"side by side, {name}: {res['errors']} failed of {res['requests']}")
        cpu = cpu1[name] - cpu0[name]
        row[name] = {
            "requests": res["requests"],
            "rps": round(res["rps"], 1),
            "cpu_us_per_post": round(cpu * 1e6 / res["requests"], 1),
            "cpu_s": round(cpu, 2),
            # The kernel shares the core per thread, not per process: a server with a
            # second busy thread (wahook's writer) gets a little more than its half.
            "core_share": round(cpu / core_seconds, 3) if core_seconds else 0.0,
            "errors": res["errors"],
            # Its wrk stopped early, every body of the round sent once (a repeated one would
            # be a dedupe hit, cheaper for wahook); the report says so.
            "bodies_ran_out": res["bodies_ran_out"],
            "repeated": res["wrapped"],
        }
    # The CPU ratio is the throughput ratio only while the core had no idle time to give.
    row["core_busy"] = round(busy / total, 3) if total else 0.0
    return row


def _warm_all(sides: dict[str, Server], ctx: Ctx) -> None:
    """Warm every server at once (each its own wrk), as they will be loaded."""
    warmers = [threading.Thread(target=_warm, args=(s, ctx)) for s in sides.values()]
    for t in warmers:
        t.start()
    for t in warmers:
        t.join()


def _pair(
    ctx: Ctx,
    sides: dict[str, Server],
    baseline: str,
    candidate: str,
    rounds: int,
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    """``rounds`` side-by-side rounds; per round CPU ratio = baseline / candidate CPU per POST
    (> 1: the candidate is cheaper) and served ratio = candidate / baseline requests."""
    per_round = []
    for bodies in _sbs_bodies(ctx, rounds):
        row = _duel_round(sides, bodies, seconds, connections)
        base, cand = row[baseline], row[candidate]
        # A run cut short by its bodies may spend under one clock tick: no ratio then.
        cand_cpu = cand["cpu_us_per_post"]
        row["cpu_ratio"] = round(base["cpu_us_per_post"] / cand_cpu, 3) if cand_cpu else 0.0
        row["served_ratio"] = round(cand["requests"] / base["requests"], 3)
        per_round.append(row)
    return {
        "baseline": baseline,
        "candidate": candidate,
        "rounds": per_round,
        "cpu_us_per_post": {
            k: round(median([r[k]["cpu_us_per_post"] for r in per_round]), 1)
            for k in (baseline, candidate)
        },
        "cpu_ratio": round(median([r["cpu_ratio"] for r in per_round]), 3),
        "served_ratio": round(median([r["served_ratio"] for r in per_round]), 3),
        "core_busy": round(median([r["core_busy"] for r in per_round]), 3),
        # Both servers' share of core 1 together: low when other work took the core, and then
        # each CPU figure is fewer clock ticks (10 ms each), so a coarser one.
        "servers_share": round(
            median([r[baseline]["core_share"] + r[candidate]["core_share"] for r in per_round]), 3
        ),
    }


def _started(kinds: dict[str, str], ctx: Ctx) -> dict[str, Server]:
    """Fresh servers, one per side (name -> server kind), all stopped if one fails to start."""
    sides: dict[str, Server] = {}
    try:
        for name, kind in kinds.items():
            sides[name] = start(kind, ctx.secret, ctx.log_dir)
    except BaseException:
        for server in sides.values():
            server.stop()
        raise
    return sides


def _stop_all(sides: dict[str, Server]) -> None:
    for server in sides.values():
        server.stop()


def side_by_side(
    ctx: Ctx,
    rounds: int,
    seconds: float,
    groups: int = 4,
    connections: int = 50,
    aa: bool = False,
    vs_pywa_async: bool = False,
    pair: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Both servers of a comparison on the server core at once, a wrk with ``connections / 2``
    each: with ``vs_pywa_async`` first wahook vs pywa's async receiver (the headline), then
    wahook vs bare Tornado, wahook with ``groups`` live readers vs wahook with none, and with
    ``aa`` wahook vs wahook (the instrument's own spread). With ``pair`` (baseline kind,
    candidate kind) only that comparison runs: a before/after of one change. Fresh servers for
    each comparison, warmed together, then ``rounds`` rounds of ``seconds``; medians."""
    each = max(1, connections // 2)
    out: dict[str, Any] = {"seconds": seconds, "rounds": rounds, "connections_each": each}
    if pair is not None:
        base, cand = pair
        names = {base: base, cand: cand} if base != cand else {f"{base}_a": base, f"{cand}_b": cand}
        out["pair"] = _fresh_pair(ctx, names, rounds, seconds, each)
        return out
    if vs_pywa_async:
        names = {"pywa_async": "pywa_async", "wahook": "wahook"}
        out["vs_pywa_async"] = _fresh_pair(ctx, names, rounds, seconds, each)
    out["vs_bare"] = _fresh_pair(ctx, {"bare": "bare", "wahook": "wahook"}, rounds, seconds, each)

    sides = _started({"no_subscriber": "wahook", "with_groups": "wahook"}, ctx)
    subs: list[Subscriber] = []
    try:
        _warm_all(sides, ctx)
        # The readers join after the warm-up (their groups start at "latest"). Long timers:
        # each is stopped right after the last round.
        subs = [
            Subscriber(sides["with_groups"], "drain", f"sbs-{i}", rounds * (seconds + 5) + 120)
            for i in range(groups)
        ]
        for sub in subs:
            sub.wait_ready()
        pair = _pair(ctx, sides, "no_subscriber", "with_groups", rounds, seconds, each)
        time.sleep(0.3)  # the last POSTs' events reach the readers
        received = [s.stop() for s in subs]
    finally:
        for sub in subs:
            sub.kill()
        _stop_all(sides)
    posted = sum(r["with_groups"]["requests"] for r in pair["rounds"])
    pair["groups"] = groups
    # Each group reads live; the slowest group's count against what the POSTs carried.
    pair["min_group_events"] = min(x["events"] for x in received)
    pair["approx_events_posted"] = round(posted * ctx.events_per_body)
    out["groups"] = pair

    if aa:
        names = {"wahook_a": "wahook", "wahook_b": "wahook"}
        out["aa"] = _fresh_pair(ctx, names, rounds, seconds, each)
    return out


def _fresh_pair(
    ctx: Ctx, names: dict[str, str], rounds: int, seconds: float, each: int
) -> dict[str, Any]:
    """Two fresh servers (``names``: side -> kind, baseline first), warmed together, then
    ``_pair``'s rounds."""
    sides = _started(names, ctx)
    try:
        _warm_all(sides, ctx)
        baseline, candidate = names
        return _pair(ctx, sides, baseline, candidate, rounds, seconds, each)
    finally:
        _stop_all(sides)
