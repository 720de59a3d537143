"""What wahook's own code costs per POST, without HTTP: the signature check, the normaliser and
the append's preparation (``store.sqlite.events.prepare``: each event serialised, its columns
read), over a fixed set of distinct signed bodies of the bench mix (``benchlib.payloads``).

By default it prints CPU per POST of each stage (``time.thread_time``, the best of
``--rounds``); with ``--callgrind`` the instructions per POST of each stage, counted by running
itself under valgrind twice (one pass over the bodies, then three) and taking the difference, so
start-up and warm-up cancel out. Instruction counts do not move with the machine's load: compare
two builds by them (``bench_post_cost.py`` counts the whole server the same way).

    .venv/bin/python bench/bench_core_cost.py [--bodies 2000] [--rounds 5] [--callgrind]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import payloads  # noqa: E402
from wahook.core.normalize import normalize  # noqa: E402
from wahook.core.signature import Keyring  # noqa: E402
from wahook.store.sqlite import events as sqlite_events  # noqa: E402

SECRET = "bench-core-cost-secret"
WARM = 300
RECEIVED_AT = 1764000000.123456
STAGES = ("verify", "normalize", "prepare")


def _bodies(count: int) -> list[tuple[bytes, str]]:
    return [
        (body, payloads.sign(body, SECRET))
        for _, body in payloads.generate(WARM + count, "corecost")
    ]


def _stage(name: str, signed: list[tuple[bytes, str]]) -> Callable[[], None]:
    """A function running stage ``name`` once over every body (its inputs made up front)."""
    if name == "verify":
        keyring = Keyring([SECRET])

        def verify() -> None:
            for body, signature in signed:
                keyring.verify(body, signature)

        return verify
    if name == "normalize":
        bodies = [body for body, _ in signed]

        def run_normalize() -> None:
            for body in bodies:
                normalize(body, RECEIVED_AT)

        return run_normalize
    events = [normalize(body, RECEIVED_AT) for body, _ in signed]
    prepare = sqlite_events.prepare

    def run_prepare() -> None:
        for batch in events:
            for event in batch:
                prepare(event)

    return run_prepare


def _instructions(stage: str, bodies: int, passes: int) -> int:
    """All instructions of this script run under callgrind for ``passes`` passes of ``stage``."""
    with tempfile.TemporaryDirectory(prefix="wahook-core-cost-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = [sys.executable, __file__, "--bodies", str(bodies)]
        argv += ["--passes", str(passes), "--stage", stage]
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert found is not None, "no totals in the callgrind output"
        return int(found[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bodies", type=int, default=2000, help="distinct signed bodies")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (the best counts)")
    p.add_argument("--callgrind", action="store_true", help="count instructions (~1 minute)")
    # Internal: what one callgrind run executes.
    p.add_argument("--passes", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.passes is not None:
        signed = _bodies(args.bodies)
        _stage(args.stage, signed[:WARM])()
        run = _stage(args.stage, signed[WARM:])
        for _ in range(args.passes):
            run()
        return 0
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
            return 1
        print(f"instructions per POST, {args.bodies} distinct bench-mix bodies (callgrind)")
        total = 0
        for stage in STAGES:
            one = _instructions(stage, args.bodies, 1)
            three = _instructions(stage, args.bodies, 3)
            per_post = round((three - one) / 2 / args.bodies)
            total += per_post
            print(f"{stage:10s} {per_post:>9,}")
        print(f"{'all':10s} {total:>9,}")
        return 0
    signed = _bodies(args.bodies)
    print(f"CPU per POST (us), {args.bodies} distinct bench-mix bodies, best of {args.rounds}")
    total = 0.0
    for stage in STAGES:
        _stage(stage, signed[:WARM])()
        run = _stage(stage, signed[WARM:])
        best = float("inf")
        for _ in range(args.rounds):
            start = time.thread_time()
            run()
            best = min(best, time.thread_time() - start)
        per_post = best * 1e6 / args.bodies
        total += per_post
        print(f"{stage:10s} {per_post:9.2f}")
    print(f"{'all':10s} {total:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
