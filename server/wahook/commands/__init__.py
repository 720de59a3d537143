"""The `wahook` subcommands, one module each (see wahook.cli)."""

from __future__ import annotations

import argparse
import os


def add_target_option(parser: argparse.ArgumentParser) -> None:
    """``--target``, the sidecar's gRPC address, and ``--token``, its bearer token, for
    the commands that talk to one."""
    parser.add_argument(
        "--target",
        default=None,
        help="gRPC address (default $WAHOOK_GRPC_HOST:$WAHOOK_GRPC_PORT or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token the sidecar asks for (default $WAHOOK_GRPC_TOKEN, its first when "
        "several, or the file $WAHOOK_GRPC_TOKEN_FILE)",
    )


def grpc_token(args: argparse.Namespace) -> str | None:
    """``--token``, else the first of WAHOOK_GRPC_TOKEN (or its _FILE): the same variable
    ``wahook serve`` reads, so one environment serves both."""
    if args.token:
        return str(args.token)
    text = os.environ.get("WAHOOK_GRPC_TOKEN") or ""
    path = os.environ.get("WAHOOK_GRPC_TOKEN_FILE")
    if not text and path:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return text.split(",")[0].strip() or None


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
