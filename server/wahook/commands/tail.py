"""`wahook tail`: subscribe as a consumer group and print each event as one JSON line.

Each event is printed (protobuf JSON mapping, one line) and then acked. Exits 0 after
``--count`` events, when ``--timeout`` seconds have passed (with whatever arrived,
possibly nothing), or on Ctrl-C; exits 1 when the server refuses the subscription
(e.g. INVALID_ARGUMENT for a bad group name) and 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

import grpc

from wahook.client import Subscriber, start_position
from wahook.commands import add_target_option, grpc_target, grpc_token
from wahook.core.jsonout import event_to_json
from wahook.v1 import event_pb2

EVENT_TYPES = {
    name.removeprefix("EVENT_TYPE_").lower(): value
    for name, value in event_pb2.EventType.items()
    if value != event_pb2.EVENT_TYPE_UNSPECIFIED
}


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "tail",
        help="subscribe to events and print them as JSON lines",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("--group", required=True, help="durable consumer group name")
    p.add_argument(
        "--from",
        dest="start",
        default="earliest",
        help="where a new group starts: earliest (default), latest, or after:SEQUENCE",
    )
    p.add_argument("--count", type=int, default=0, metavar="N", help="exit after N events")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="exit after")
    p.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        choices=sorted(EVENT_TYPES),
        help="only these event types (repeatable)",
    )
    p.add_argument(
        "--message-type",
        action="append",
        default=[],
        help="only messages of Meta's type (text, image, interactive, ...; repeatable)",
    )
    p.add_argument("--phone-number-id", action="append", default=[], help="repeatable")
    p.add_argument("--waba-id", action="append", default=[], help="repeatable")
    add_target_option(p)
    p.add_argument("--ack-deadline", type=float, default=30.0, metavar="SECONDS")
    p.set_defaults(run=run)


async def tail(args: argparse.Namespace, target: str) -> int:
    flt = event_pb2.EventFilter(
        event_types=[EVENT_TYPES[t] for t in args.types],
        message_types=args.message_type,
        phone_number_ids=args.phone_number_id,
        waba_ids=args.waba_id,
    )
    sub = Subscriber(
        target,
        args.group,
        filter=flt,
        start=args.start,
        ack_deadline=args.ack_deadline,
        max_in_flight=max(args.count, 0) or 1000,
        token=grpc_token(args),
    )
    got = 0
    try:
        async with asyncio.timeout(args.timeout):
            async for delivery in sub:
                sys.stdout.write(event_to_json(delivery.event) + "\n")
                sys.stdout.flush()
                await sub.ack(delivery)
                got += 1
                if args.count and got >= args.count:
                    break
    except TimeoutError:
        pass
    except grpc.aio.AioRpcError as exc:
        print(f"wahook tail: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        await sub.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    target = grpc_target(args)
    try:
        start_position(args.start)
    except ValueError as exc:
        print(f"wahook tail: --from: {exc}", file=sys.stderr)
        return 2
    try:
        grpc_token(args)
    except OSError as exc:
        print(
            f"wahook tail: WAHOOK_GRPC_TOKEN_FILE: {exc.strerror}: {exc.filename}", file=sys.stderr
        )
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(tail(args, target))
    return 0
