"""`wahook tail`: subscribe as a consumer group and print each event as one JSON line.

Each event is printed (protobuf JSON mapping, one line) and then acked. Without --group it
reads through a consumer group of its own, deleted when it exits (and expiring 10 minutes
after it was last connected should it be killed), so that it holds nothing back from
retention. It takes the flags of the example subscribers under clients/ (--event-types a,b,
--message-types, --from, --count, --idle-exit) and a few more. It ends after --count
events, when --timeout seconds have passed, after --idle-exit seconds without an event, or
on SIGTERM or Ctrl-C: it sends the acks of what it printed and ends as if done (SIGTERM is
handled, so it also stops as a container's PID 1, for which the kernel ignores a signal
without a handler). Exit codes: 0 done; 1 the server refused the subscription (e.g.
INVALID_ARGUMENT for a bad group name); 2 bad flags; 3 it never reached the server (no
stream opened: wrong --target, or the sidecar is down); 4 --count N was asked and fewer
events came.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
from typing import Any

import grpc

from wahook.client import Subscriber, bearer, start_position
from wahook.commands import Connection, UsageError, add_target_option, connection
from wahook.commands.jsonout import event_to_json
from wahook.v1 import event_pb2, service_pb2, service_pb2_grpc

EVENT_TYPES = {
    name.removeprefix("EVENT_TYPE_").lower(): value
    for name, value in event_pb2.EventType.items()
    if value != event_pb2.EVENT_TYPE_UNSPECIFIED
}

EXIT_REFUSED, EXIT_USAGE, EXIT_NEVER_CONNECTED, EXIT_SHORT = 1, 2, 3, 4
# A temporary group's idle expiry: the shortest a group may have, for a tail killed
# before it could delete its group.
EPHEMERAL_EXPIRY = 600.0
# Stop cleanly on these: the stream half-closes after the acks of what was printed. Python
# leaves SIGTERM at its default action, which the kernel never takes for a PID 1.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _not_negative(cast: Any, what: str) -> Any:
    """An argparse type: ``cast(text)``, refusing a negative value (exit 2 with the reason,
    where a negative --timeout used to end as "never connected", a negative --count as no
    limit)."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
        return value

    return parse


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "tail",
        help="subscribe to events and print them as JSON lines",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument(
        "--group",
        default=None,
        help="durable consumer group name (default: a temporary group, deleted at exit)",
    )
    p.add_argument(
        "--from",
        dest="start",
        default="earliest",
        help="where a new group starts: earliest (default), latest, or after:SEQUENCE",
    )
    p.add_argument(
        "--count",
        type=_not_negative(int, "a whole number"),
        default=0,
        metavar="N",
        help="exit after N events; exit 4 if fewer came (0: no limit)",
    )
    p.add_argument(
        "--timeout",
        type=_not_negative(float, "a number"),
        default=None,
        metavar="SECONDS",
        help="exit after SECONDS",
    )
    p.add_argument(
        "--idle-exit",
        type=_not_negative(float, "a number"),
        default=0.0,
        metavar="SECONDS",
        help="exit after SECONDS without an event (0: never)",
    )
    p.add_argument(
        "--event-types",
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="TYPES",
        help=f"only these event types, comma-separated and repeatable ({', '.join(EVENT_TYPES)})",
    )
    p.add_argument(
        "--message-types",
        "--message-type",
        dest="message_types",
        action="append",
        default=[],
        metavar="TYPES",
        help="only messages of Meta's types (text, image, interactive, ...); comma-separated, "
        "repeatable",
    )
    p.add_argument(
        "--phone-number-id",
        action="append",
        default=[],
        metavar="ID",
        help="only events of this business phone number id (repeatable)",
    )
    p.add_argument(
        "--waba-id",
        action="append",
        default=[],
        metavar="ID",
        help="only events of this WhatsApp Business Account id (repeatable)",
    )
    add_target_option(p)
    p.add_argument(
        "--ack-deadline",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long an event waits for its ack before the group gets it again (default 30)",
    )
    p.set_defaults(run=run)


def _split(values: list[str]) -> list[str]:
    """``["a,b", "c"]`` (repeated flags, comma lists) as ``["a", "b", "c"]``."""
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


async def tail(args: argparse.Namespace, conn: Connection, types: list[str]) -> int:
    flt = event_pb2.EventFilter(
        event_types=[EVENT_TYPES[t] for t in types],
        message_types=_split(args.message_types),
        phone_number_ids=args.phone_number_id,
        waba_ids=args.waba_id,
    )
    group = args.group or f"tail-{secrets.token_hex(6)}"
    sub = Subscriber(
        conn.target,
        group,
        filter=flt,
        start=args.start,
        ack_deadline=args.ack_deadline,
        max_in_flight=max(args.count, 0) or 1000,
        expire_after_idle=None if args.group else EPHEMERAL_EXPIRY,
        token=conn.token,
        credentials=conn.credentials,
    )
    loop = asyncio.get_running_loop()
    stops: set[asyncio.Task[None]] = set()  # referenced until done (the loop's are weak)

    def stop() -> None:
        task = loop.create_task(sub.stop())
        stops.add(task)
        task.add_done_callback(stops.discard)

    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop)
    try:
        return await _print_events(sub, args, conn.target)
    finally:
        if not args.group and sub.connected:
            await _delete_group(conn, group)
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _delete_group(conn: Connection, group: str) -> None:
    async with conn.channel() as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        request = service_pb2.DeleteConsumerGroupRequest(consumer_group=group)
        with contextlib.suppress(grpc.aio.AioRpcError):  # expired meanwhile, or unreachable
            await stub.DeleteConsumerGroup(request, timeout=5.0, metadata=bearer(conn.token))


async def _print_events(sub: Subscriber, args: argparse.Namespace, target: str) -> int:
    loop = asyncio.get_running_loop()
    got = 0
    try:
        async with asyncio.timeout(args.timeout), asyncio.timeout(None) as idle:
            if args.idle_exit > 0:
                idle.reschedule(loop.time() + args.idle_exit)
            async for delivery in sub:
                sys.stdout.write(event_to_json(delivery.event) + "\n")
                sys.stdout.flush()
                await sub.ack(delivery)
                got += 1
                if args.count and got >= args.count:
                    break
                if args.idle_exit > 0:
                    idle.reschedule(loop.time() + args.idle_exit)
    except TimeoutError:
        pass
    except grpc.aio.AioRpcError as exc:
        print(f"wahook tail: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        await sub.stop()
    if not sub.connected:
        print(
            f"wahook tail: never connected to {target} (is the sidecar running there?)",
            file=sys.stderr,
        )
        return EXIT_NEVER_CONNECTED
    if args.count and got < args.count:
        print(f"wahook tail: {got} of --count {args.count} events", file=sys.stderr)
        return EXIT_SHORT
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        start_position(args.start)
    except ValueError as exc:
        print(f"wahook tail: --from: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        conn = connection(args)
    except UsageError as exc:
        print(f"wahook tail: {exc}", file=sys.stderr)
        return EXIT_USAGE
    types = _split(args.types)
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        print(
            f"wahook tail: --event-types: unknown {', '.join(unknown)}; "
            f"one of {', '.join(EVENT_TYPES)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(tail(args, conn, types))
    return 0
