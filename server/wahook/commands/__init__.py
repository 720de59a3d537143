"""The `wahook` subcommands, one module each (see wahook.cli)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import grpc


class UsageError(Exception):
    """A flag or the environment is wrong (the command exits 2 with this message)."""


def add_target_option(parser: argparse.ArgumentParser) -> None:
    """``--target``, the sidecar's gRPC address, ``--token``, its bearer token, and the
    TLS flags for a sidecar serving gRPC over TLS, for the commands that talk to one."""
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
    parser.add_argument(
        "--tls-ca",
        default=None,
        metavar="FILE",
        help="connect over TLS, trusting this PEM CA or certificate for the sidecar's "
        "(WAHOOK_GRPC_TLS_CERT); with --tls-cert alone the system's CAs",
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="connect over TLS with this PEM client certificate (for a sidecar that asks for "
        "one: WAHOOK_GRPC_TLS_CLIENT_CA); with --tls-key",
    )
    parser.add_argument(
        "--tls-key", default=None, metavar="FILE", help="the client certificate's PEM key"
    )


@dataclass(frozen=True)
class Connection:
    """How to reach the sidecar's gRPC service: address, bearer token, TLS credentials
    (None: plaintext)."""

    target: str
    token: str | None
    credentials: grpc.ChannelCredentials | None

    def channel(self, options: list[tuple[str, int]] | None = None) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target, options=options)
        return grpc.aio.secure_channel(self.target, self.credentials, options=options)


def connection(args: argparse.Namespace) -> Connection:
    """The connection the target flags describe; UsageError naming what is wrong."""
    try:
        token = grpc_token(args)
    except OSError as exc:
        raise UsageError(f"WAHOOK_GRPC_TOKEN_FILE: {exc.strerror}: {exc.filename}") from None
    return Connection(grpc_target(args), token, grpc_credentials(args))


def grpc_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials from ``--tls-ca``, ``--tls-cert`` and ``--tls-key``; None (plaintext)
    without any of them."""
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")

    def read(flag: str, path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"{flag}: {exc.strerror}: {path}") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read("--tls-ca", args.tls_ca),
        private_key=read("--tls-key", args.tls_key),
        certificate_chain=read("--tls-cert", args.tls_cert),
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
