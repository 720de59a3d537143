"""`wahook normalize FILE`: print the events a webhook payload becomes, one JSON line each."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from wahook.core.jsonout import event_to_json
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
    out = sys.stdout
    for event in events:
        out.write(event_to_json(event))
        out.write("\n")
    out.flush()
    return 0
