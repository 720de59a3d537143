"""Micro-benchmark of the normaliser alone: events per second on one core, realistic mix.

The mix follows what a busy WhatsApp number receives: mostly statuses (sent /
delivered / read for every outbound message) and text messages, some button and list
replies, some media. Bodies are serialised the way Meta does (non-ASCII and "/"
escaped) with distinct wamids, in batches of 1 item and of 50 items per POST.

The baseline, measured in the same run on the same bodies, is ``json.loads`` alone:
the least any receiver must do. The ratio says how much normalising costs on top.

    .venv/bin/python bench/bench_normalize.py [--seconds N] [--cpu K]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

from wahook.core.normalize import normalize

WABA, PNID, DISPLAY = "100000000000001", "200000000000001", "15550100001"
TEXTS = [
    "Hi, is my order shipped?",
    "Obrigado! Até amanhã 😀",
    "Can I change the delivery address?",
]


def _item(kind: str, n: int, rnd: random.Random) -> tuple[str, dict[str, Any], dict[str, Any]]:
    user = f"1555010{n % 10000:04d}"
    contact = {"profile": {"name": f"User {n}"}, "wa_id": user}
    ts = str(1764000000 + n)
    wamid = f"wamid.BENCH{n:012d}"
    if kind == "status":
        state = rnd.choice(["sent", "delivered", "read"])
        status: dict[str, Any] = {
            "id": wamid,
            "status": state,
            "timestamp": ts,
            "recipient_id": user,
        }
        if state != "read":
            status["conversation"] = {"id": f"conv{n:020d}", "origin": {"type": "service"}}
            status["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
        return "statuses", status, contact
    message: dict[str, Any] = {"from": user, "id": wamid, "timestamp": ts}
    if kind == "text":
        message |= {"type": "text", "text": {"body": rnd.choice(TEXTS)}}
    elif kind == "button":
        message |= {
            "type": "interactive",
            "context": {"from": DISPLAY, "id": f"wamid.OUT{n}"},
            "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
        }
    elif kind == "list":
        message |= {
            "type": "interactive",
            "interactive": {
                "type": "list_reply",
                "list_reply": {"id": "slot-1", "title": "Tue 10:00", "description": "Room 2"},
            },
        }
    else:
        message |= {
            "type": "image",
            "image": {"id": str(900000000000000 + n), "mime_type": "image/jpeg", "sha256": "x="},
        }
    return "messages", message, contact


# Weights of the mix: statuses dominate real traffic, then text.
MIX = ["status"] * 50 + ["text"] * 30 + ["button"] * 7 + ["list"] * 5 + ["image"] * 8


def make_bodies(batch: int, count: int, seed: int = 7) -> list[bytes]:
    rnd = random.Random(seed)
    bodies, n = [], 0
    for _ in range(count):
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PNID},
        }
        for _ in range(batch):
            key, item, contact = _item(rnd.choice(MIX), n, rnd)
            n += 1
            value.setdefault(key, []).append(item)
            if key == "messages":
                value.setdefault("contacts", []).append(contact)
        doc = {
            "object": "whatsapp_business_account",
            "entry": [{"id": WABA, "changes": [{"value": value, "field": "messages"}]}],
        }
        # Meta's escaping: ASCII-only with "\/" for slashes.
        bodies.append(json.dumps(doc).replace("/", "\\/").encode())
    return bodies


def measure(fn: Callable[[bytes], Any], bodies: list[bytes], seconds: float) -> float:
    """Calls per CPU-second over at least ``seconds`` of CPU time (and one pass).

    CPU time of this process, not wall time: on a shared machine other processes
    steal the core, and what we want is what one core does for the normaliser.
    """
    done = 0
    start = time.process_time()
    deadline = start + seconds
    while True:
        for body in bodies:
            fn(body)
        done += len(bodies)
        if time.process_time() >= deadline:
            break
    return done / (time.process_time() - start)


def _normalize_now(body: bytes) -> Any:
    return normalize(body, 1764000100.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(f"normaliser micro-benchmark, {args.seconds:g} CPU-s per measurement, one core")
    print(f"{'batch':>5}  {'json.loads items/s':>19}  {'normalize events/s':>19}  {'ratio':>6}")
    for batch in (1, 50):
        bodies = make_bodies(batch, max(1, 2000 // batch))
        events_per_body = sum(len(normalize(b, 0.0)) for b in bodies) / len(bodies)
        assert events_per_body == batch, events_per_body
        base_rate = measure(json.loads, bodies, args.seconds)
        norm_rate = measure(_normalize_now, bodies, args.seconds)
        print(
            f"{batch:>5}  {base_rate * batch:>19,.0f}  {norm_rate * batch:>19,.0f}"
            f"  {norm_rate / base_rate:>6.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
