"""Signed, mutated webhook bodies against a running front: every answer must be a 200 or
a 4xx, never a 5xx, and nothing posted unsigned may be stored.

``make test`` runs a few thousand (tests/unit/test_http_fuzz.py). The longer run, against
a real `wahook serve` with TLS (see the README's Security section)::

    .venv/bin/python tests/fuzz_webhook.py --count 50000 --seed 1

Mutations (seeded, so a failure replays): bytes flipped, inserted, deleted or
duplicated; JSON values swapped for other types, huge numbers, deep nesting, long
strings, unicode escapes; whole fields removed. Each body is signed with the app secret,
so it reaches the parser and the normaliser; one in ten is sent with a wrong signature
instead and must be refused with 401.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wahook import samples

SAMPLE_KINDS = samples.KINDS
_ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    2**64,
    -(2**63) - 1,
    1e308,
    "",
    "x" * 5000,
    "\u0000\ud7ff\uffff",
    [],
    {},
    [[[[[[[[[[[]]]]]]]]]]],
    {"a": {"b": {"c": {}}}},
)


NEW_EVENTS = 0  # the key under which ``fuzz`` counts the events its 200s stored


def _walk(node: Any, rng: random.Random) -> Any:
    """``node`` with, here and there, a value replaced or a key dropped."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            roll = rng.random()
            if roll < 0.05:
                continue  # a field removed
            out[k] = rng.choice(_ODD_VALUES) if roll < 0.12 else _walk(v, rng)
        return out
    if isinstance(node, list):
        items = [_walk(v, rng) for v in node]
        if items and rng.random() < 0.1:
            items = items * rng.randint(2, 20)
        return items
    return node


def _bytes_mutated(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        i = rng.randrange(len(data))
        op = rng.randrange(4)
        if op == 0:
            data[i] = rng.randrange(256)
        elif op == 1:
            data.insert(i, rng.choice(b'{}[]",:\\0u-e.'))
        elif op == 2:
            del data[i]
        else:
            data[i:i] = data[i : i + rng.randint(1, 64)]
    return bytes(data)


def bodies(seed: int, count: int) -> Iterator[tuple[bytes, bool]]:
    """``count`` (body, signed) pairs."""
    rng = random.Random(seed)
    for _ in range(count):
        payload = samples.payload(rng.choice(SAMPLE_KINDS))
        if rng.random() < 0.5:
            body = json.dumps(_walk(payload, rng), separators=(",", ":")).encode()
        else:
            body = _bytes_mutated(samples.body(rng.choice(SAMPLE_KINDS)), rng)
        yield body, rng.random() >= 0.1


async def fuzz(
    host: str, port: int, secret: str, seed: int, count: int, ctx: ssl.SSLContext | None = None
) -> Counter[int]:
    """Post ``count`` mutated bodies on one keep-alive connection; the count of each
    status, and under ``NEW_EVENTS`` the events the 200s said were new. Raises
    AssertionError at the first 5xx, or an unsigned body not refused."""
    from wahook_testkit import sign  # noqa: PLC0415 (tests/ on the path)

    statuses: Counter[int] = Counter()
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        for body, signed in bodies(seed, count):
            signature = sign(body, secret) if signed else sign(body, secret + "-wrong")
            writer.write(
                b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (signature.encode(), len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answer = await reader.readexactly(length)
            statuses[status] += 1
            assert status < 500, (status, answer, body[:500])
            # Unsigned: refused for the signature (or, too large to check, for its size).
            assert signed or status in (401, 413), (status, answer, body[:500])
            if status == 200:
                statuses[NEW_EVENTS] += json.loads(answer)["new"]
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    finally:
        writer.close()
    return statuses


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from wahook import tls  # noqa: PLC0415
    from wahook_testkit import APP_SECRET, Certs, start_wahook  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        certs = Certs(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
        tls.generate_self_signed(certs.cert, certs.key)
        w = start_wahook(Path(tmp) / "data", certs)
        try:
            port = int(w.http_url.rsplit(":", 1)[1])
            ctx = certs.client_context()
            statuses = asyncio.run(fuzz("127.0.0.1", port, APP_SECRET, args.seed, args.count, ctx))
        finally:
            code = w.terminate()
        tracebacks = w.stderr().count("Traceback")
    print(
        f"{args.count} bodies (seed {args.seed}): "
        + ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()) if s != NEW_EVENTS)
        + f" ({statuses[NEW_EVENTS]} events stored)"
        + f"; 0 x 5xx; server exit {code}; {tracebacks} tracebacks logged"
    )
    return 0 if code == 0 and tracebacks == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
