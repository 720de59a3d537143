"""The `wahook` subcommands, one module each (see wahook.cli)."""

from __future__ import annotations

import argparse
import os


def add_target_option(parser: argparse.ArgumentParser) -> None:
    """``--target``, the sidecar's gRPC address, for the commands that talk to one."""
    parser.add_argument(
        "--target",
        default=None,
        help="gRPC address (default $WAHOOK_GRPC_HOST:$WAHOOK_GRPC_PORT or 127.0.0.1:50051)",
    )


def grpc_target(args: argparse.Namespace) -> str:
    """``--target``, or the address ``wahook serve`` listens on given the same environment."""
    return (
        str(args.target)
        if args.target
        else (
            f"{os.environ.get('WAHOOK_GRPC_HOST') or '127.0.0.1'}:"
            f"{os.environ.get('WAHOOK_GRPC_PORT') or '50051'}"
        )
    )
