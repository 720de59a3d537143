"""`wahook groups`: list, delete and rewind consumer groups, and handle their dead letters.

    wahook groups list                         one JSON line per group (position, pending,
                                               lag, dead letters, settings)
    wahook groups delete NAME                  delete a group (its streams end)
    wahook groups seek NAME --to POSITION      replay: earliest, latest, after:SEQUENCE or
                                               time:2026-01-31T09:00:00Z (events received
                                               since then are delivered again)
    wahook groups dead-letters NAME            one JSON line per dead letter (its event,
                                               attempts, last error)
    wahook groups dead-letters NAME --redeliver SEQ ... | --redeliver-all
    wahook groups dead-letters NAME --discard SEQ ... | --discard-all

Exits 0 on success, 1 when the server refuses (e.g. NOT_FOUND for an unknown group) and
2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from wahook.client import DEFAULT_MAX_RECEIVE_BYTES, bearer, start_position
from wahook.commands import Connection, UsageError, add_target_option, connection
from wahook.v1 import service_pb2, service_pb2_grpc

Stub = Any  # service_pb2_grpc.EventServiceStub on an aio channel


class _WithToken:
    """The stub, each call carrying the bearer token (``--token``/WAHOOK_GRPC_TOKEN)."""

    def __init__(self, stub: Stub, token: str | None) -> None:
        self._stub = stub
        self._metadata = bearer(token)

    def __getattr__(self, name: str) -> Any:
        return partial(getattr(self._stub, name), metadata=self._metadata)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "groups",
        help="list, delete and rewind consumer groups; their dead letters",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(
        dest="action",
        metavar="ACTION",
        required=True,
        help="list, delete, seek or dead-letters (each has --help)",
    )
    listing = actions.add_parser("list", help="every consumer group, one JSON line each")
    delete = actions.add_parser("delete", help="delete a consumer group")
    delete.add_argument("name", metavar="NAME", help="the consumer group")
    seek = actions.add_parser("seek", help="move a group's position (replay or skip)")
    seek.add_argument("name", metavar="NAME", help="the consumer group")
    seek.add_argument(
        "--to",
        required=True,
        metavar="POSITION",
        help="earliest, latest, after:SEQUENCE or time:ISO-8601 (e.g. time:2026-01-31T09:00Z)",
    )
    dead = actions.add_parser("dead-letters", help="list, redeliver or discard dead letters")
    dead.add_argument("name", metavar="NAME", help="the consumer group")
    what = dead.add_mutually_exclusive_group()
    what.add_argument("--redeliver", type=_sequence, nargs="+", metavar="SEQ", help="deliver again")
    what.add_argument("--redeliver-all", action="store_true", help="every dead letter again")
    what.add_argument("--discard", type=_sequence, nargs="+", metavar="SEQ", help="delete for good")
    what.add_argument("--discard-all", action="store_true", help="delete every dead letter")
    for action in (listing, delete, seek, dead):
        add_target_option(action)
    p.set_defaults(run=run)


def _sequence(text: str) -> int:
    """A dead letter's sequence, 1 to 2^63-1: anything else is a usage error (exit 2), not a
    traceback from the request's uint64 field."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a sequence: {text!r}") from None
    if not 1 <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"a sequence is 1 to 2^63-1, not {text}")
    return value


def _line(message: Message) -> str:
    return json.dumps(MessageToDict(message), ensure_ascii=False, separators=(",", ":"))


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _list(stub: Stub, args: argparse.Namespace) -> None:
    token = ""
    while True:
        page = await stub.ListConsumerGroups(
            service_pb2.ListConsumerGroupsRequest(page_size=1000, page_token=token)
        )
        for group in page.groups:
            _print(_line(group))
        token = page.next_page_token
        if not token:
            return


async def _delete(stub: Stub, args: argparse.Namespace) -> None:
    await stub.DeleteConsumerGroup(service_pb2.DeleteConsumerGroupRequest(consumer_group=args.name))
    print(f"deleted consumer group {args.name}", file=sys.stderr)


async def _seek(stub: Stub, args: argparse.Namespace) -> None:
    request = service_pb2.SeekConsumerGroupRequest(
        consumer_group=args.name, position=start_position(args.to)
    )
    _print(_line((await stub.SeekConsumerGroup(request)).group))


async def _dead_letters(stub: Stub, args: argparse.Namespace) -> None:
    group = args.name
    for rpc, sequences, everything, what in (
        ("RedeliverDeadLetters", args.redeliver, args.redeliver_all, "to be delivered again"),
        ("DiscardDeadLetters", args.discard, args.discard_all, "discarded"),
    ):
        if sequences or everything:
            request = getattr(service_pb2, f"{rpc}Request")(
                consumer_group=group, sequences=sequences or [], all=everything
            )
            done = await getattr(stub, rpc)(request)
            print(f"{done.count} dead letters of {group} {what}", file=sys.stderr)
            return
    token = ""
    while True:
        page = await stub.ListDeadLetters(
            service_pb2.ListDeadLettersRequest(consumer_group=group, page_token=token)
        )
        for letter in page.dead_letters:
            _print(_line(letter))
        token = page.next_page_token
        if not token:
            return


ACTIONS: dict[str, Callable[[Stub, argparse.Namespace], Awaitable[None]]] = {
    "list": _list,
    "delete": _delete,
    "seek": _seek,
    "dead-letters": _dead_letters,
}


async def _run(args: argparse.Namespace, conn: Connection) -> int:
    # A dead letter carries its event, which can be larger than gRPC's default 4 MiB.
    options = [("grpc.max_receive_message_length", DEFAULT_MAX_RECEIVE_BYTES)]
    async with conn.channel(options) as channel:
        try:
            stub = _WithToken(service_pb2_grpc.EventServiceStub(channel), conn.token)
            await ACTIONS[args.action](stub, args)
        except grpc.aio.AioRpcError as exc:
            print(
                f"wahook groups {args.action}: {exc.code().name}: {exc.details()}", file=sys.stderr
            )
            return 1
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "seek":
        try:
            start_position(args.to)
        except ValueError as exc:
            print(f"wahook groups seek: --to: {exc}", file=sys.stderr)
            return 2
    try:
        conn = connection(args)
    except UsageError as exc:
        print(f"wahook groups: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, conn))
