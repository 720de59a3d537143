"""The `wahook` command line: one subcommand per module in wahook.commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines ``add_parser(subparsers)`` (registering its subparser with
# ``set_defaults(run=...)``) and a ``run(args) -> int``. Imported lazily so that
# `wahook normalize` does not pay for tornado and grpc.
COMMANDS = {
    "serve": "wahook.commands.serve",
    "send": "wahook.commands.send",
    "tail": "wahook.commands.tail",
    "normalize": "wahook.commands.normalize",
    "media": "wahook.commands.media",
    "groups": "wahook.commands.groups",
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wahook",
        description="Receive WhatsApp Cloud API webhooks and serve them as typed events over gRPC.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = [a for a in argv if a in COMMANDS][:1] or list(COMMANDS)
    for name, module in COMMANDS.items():
        if name in wanted:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=f"see `wahook {name} --help`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
