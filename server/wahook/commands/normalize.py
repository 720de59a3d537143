"""`wahook normalize FILE`: print the events a webhook payload becomes, one JSON line each."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from wahook.commands.jsonout import event_to_json
from wahook.core.normalize import normalize
from wahook.errors import PayloadError

EXIT_USAGE = 2


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 253402300799:  # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"not Unix seconds: {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "normalize",
        help="print the events a webhook payload becomes, as JSON lines",
        description=(
            "Normalise a WhatsApp webhook body and print one JSON line per event, in order, "
            "in the protobuf JSON mapping."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="the webhook body (a JSON file); - for stdin")
    parser.add_argument(
        "--received-at",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="receive time to stamp on events, Unix seconds (default: now)",
    )
    parser.set_defaults(run=run)


def _why_none(body: bytes) -> str:
    """Why a body that normalised cleanly gave no event (it parsed: a JSON object)."""
    payload = json.loads(body)
    obj = payload.get("object")
    if obj is None:
        return 'no "object" (Meta sends "whatsapp_business_account")'
    if obj != "whatsapp_business_account":
        return (
            f'"object" is {json.dumps(obj)}, not "whatsapp_business_account" (a webhook of '
            "another Meta product, which wahook ignores)"
        )
    entries = payload.get("entry") or []
    if not any(isinstance(e, dict) and e.get("changes") for e in entries):
        return 'no entry has any change ("entry" or every "changes" is empty or missing)'
    # Every change becomes at least one event (typed, CHANGE or MALFORMED) today.
    return "none of its changes became an event"


def run(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            body = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as handle:
                body = handle.read()
    except OSError as exc:
        print(f"wahook normalize: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    received_at = time.time() if args.received_at is None else args.received_at
    try:
        events = normalize(body, received_at)
    except PayloadError as exc:
        print(f"wahook normalize: {args.file}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if not events:
        print(f"wahook normalize: {args.file}: 0 events: {_why_none(body)}", file=sys.stderr)
    out = sys.stdout
    for event in events:
        out.write(event_to_json(event))
        out.write("\n")
    out.flush()
    return 0
