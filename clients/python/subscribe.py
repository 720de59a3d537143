"""The example a Python service copies: join a wahook consumer group, switch on each event's
typed payload, print one JSON line per event, and ack it after handling.

    python clients/python/subscribe.py --target 127.0.0.1:50051 --group billing \\
        --event-types message,status

The stream, acks and reconnects come from ``wahook.client.Subscriber`` (the same code
`wahook tail` runs); this file is only the part a service writes itself. Exit codes: 0
done, 1 refused by the server, 3 never reached the server, 4 fewer events than --count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import grpc
from wahook.client import Subscriber
from wahook.v1 import event_pb2, message_pb2, service_pb2, status_pb2


def summarize(delivery: service_pb2.Delivery) -> dict[str, Any]:
    """Switch on the typed payload: where a service routes each kind of event to its code.

    The fields are the ones every example client prints (clients/README.md).
    """
    ev = delivery.event
    out: dict[str, Any] = {
        "id": ev.id,
        "sequence": ev.sequence,
        "attempt": delivery.attempt,
        "type": event_pb2.EventType.Name(ev.type).removeprefix("EVENT_TYPE_").lower(),
    }
    match ev.WhichOneof("payload"):
        case "message":
            m = ev.message
            # `from` is a Python keyword, so the field is read by name.
            out |= {"message_type": m.type_name, "message_id": m.id, "from": getattr(m, "from")}
            match m.WhichOneof("content"):
                case "text":
                    out["text"] = m.text.body
                case "interactive":
                    match m.interactive.WhichOneof("reply"):
                        case "button_reply":
                            r = m.interactive.button_reply
                            out |= {"reply_id": r.id, "reply_title": r.title}
                        case "list_reply":
                            lr = m.interactive.list_reply
                            out |= {"reply_id": lr.id, "reply_title": lr.title}
                        case "flow_reply":
                            out["reply_title"] = m.interactive.flow_reply.name
                case "button":
                    out |= {"reply_id": m.button.payload, "reply_title": m.button.text}
                case "image" | "audio" | "video" | "document" | "sticker" as kind:
                    media: message_pb2.Media = getattr(m, kind)
                    out |= {"media_id": media.id, "mime_type": media.mime_type}
                    out["caption"] = media.caption
                case "location":
                    loc = m.location
                    out |= {"latitude": loc.latitude, "longitude": loc.longitude}
                    out["location_name"] = loc.name
                case "reaction":
                    out |= {"emoji": m.reaction.emoji, "reacted_to": m.reaction.message_id}
        case "status":
            st = ev.status
            state = status_pb2.DeliveryState.Name(st.state).removeprefix("DELIVERY_STATE_")
            out |= {"message_id": st.id, "recipient_id": st.recipient_id, "status": state.lower()}
    # Like the other examples, leave out empty strings.
    return {k: v for k, v in out.items() if v != ""}


def refuse(types: list[str], delivery: service_pb2.Delivery) -> None:
    """Stands in for a handler that fails on some events (a poison event): their nack carries
    the error, and once the group's max_delivery_attempts are used up they wait in its dead
    letters."""
    kind = delivery.event.message.type_name
    if kind and kind in types:
        raise ValueError(f"message type {kind} refused (--fail-message-types)")


def split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Subscribe to wahook events and print them.")
    p.add_argument("--target", default=os.environ.get("WAHOOK_GRPC_TARGET", "127.0.0.1:50051"))
    p.add_argument("--group", default=os.environ.get("WAHOOK_GROUP", "python-example"))
    p.add_argument(
        "--token",
        default=os.environ.get("WAHOOK_GRPC_TOKEN") or None,
        help="the sidecar's bearer token, when it asks for one (env WAHOOK_GRPC_TOKEN)",
    )
    p.add_argument("--event-types", default="", help="e.g. message,status (default: all)")
    p.add_argument("--message-types", default="", help="e.g. text,interactive (default: all)")
    p.add_argument("--from", dest="start", choices=["earliest", "latest"], default="earliest")
    p.add_argument("--count", type=int, default=0, help="exit after N events (0: never)")
    p.add_argument("--idle-exit", type=float, default=0.0, help="exit after SECONDS without one")
    p.add_argument(
        "--max-delivery-attempts",
        type=int,
        default=0,
        help="a new group's deliveries of an event before it is dead-lettered (0: the server's 10)",
    )
    p.add_argument(
        "--fail-message-types",
        default="",
        help="e.g. image: its handler fails on these (nacked with the error: a poison event)",
    )
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    event_filter = event_pb2.EventFilter(
        event_types=[
            event_pb2.EventType.Value(f"EVENT_TYPE_{t.upper()}") for t in split(args.event_types)
        ],
        message_types=split(args.message_types),
    )
    # Plaintext: the sidecar's gRPC port listens on loopback next to the service. Pass
    # credentials=grpc.ssl_channel_credentials() when it is reached over a network.
    sub = Subscriber(
        args.target,
        args.group,
        filter=event_filter,
        start=args.start,
        consumer_name="python-example",
        token=args.token,
        max_delivery_attempts=args.max_delivery_attempts,
    )
    fail_types = split(args.fail_message_types)
    loop = asyncio.get_running_loop()
    stops: set[asyncio.Task[None]] = set()  # keep a reference until the task is done

    def stop() -> None:
        task = loop.create_task(sub.stop())
        stops.add(task)
        task.add_done_callback(stops.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    idle = loop.call_later(args.idle_exit, stop) if args.idle_exit > 0 else None

    handled = 0
    try:
        async for delivery in sub:
            # Acks and nacks name this delivery's lease (delivery.ack_id): if it ended (the
            # deadline passed, the event went to another subscriber) they do nothing. A
            # handler that needs longer than the ack deadline calls
            # `await sub.extend(delivery, seconds)` first.
            try:
                print(json.dumps(summarize(delivery), ensure_ascii=False), flush=True)
                refuse(fail_types, delivery)
            except Exception as exc:  # the handler failed: again in 1 s, doubling per attempt
                # up to 1 min, with the reason. After the group's max_delivery_attempts the
                # event goes to its dead letters with this error (`wahook groups dead-letters`).
                delay = min(60.0, 2.0 ** (delivery.attempt - 1))
                await sub.nack(delivery, delay=delay, error=str(exc) or type(exc).__name__)
                continue
            await sub.ack(delivery)  # after handling: at-least-once
            handled += 1
            if idle is not None:
                idle.cancel()
                idle = loop.call_later(args.idle_exit, stop)
            if args.count and handled >= args.count:
                await sub.stop()  # sends this ack, then ends the stream
    except grpc.aio.AioRpcError as exc:
        print(f"wahook: subscription rejected: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        if idle is not None:
            idle.cancel()
        await sub.stop()
        # What the server confirmed. An expired ack means the event comes again: handle
        # events idempotently.
        print(
            f"wahook: confirmed {sub.confirmed_acks} acks, {sub.confirmed_nacks} nacks,"
            f" {sub.confirmed_extensions} lease extensions; {sub.expired_acks} expired",
            file=sys.stderr,
        )
    if not sub.connected:
        print(f"wahook: never connected to {args.target}", file=sys.stderr)
        return 3
    if args.count and handled < args.count:
        print(f"wahook: {handled} of --count {args.count} events", file=sys.stderr)
        return 4
    return 0


def main() -> int:
    # wahook.client says on stderr when it reconnects, as the other examples do.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    return asyncio.run(run(parse_args()))


if __name__ == "__main__":
    sys.exit(main())
