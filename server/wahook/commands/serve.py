"""`wahook serve`: run the sidecar; flags mirror config.OPTIONS, `--dev` makes local credentials."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wahook import config as cfg
from wahook import tls
from wahook.errors import ConfigError, WahookError


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the webhook receiver and the gRPC event service",
        description=(
            "Receive WhatsApp Cloud API webhooks over HTTPS, store them durably and serve them "
            "over gRPC. Every flag has a WAHOOK_* environment variable; flags win."
        ),
    )
    for opt in cfg.OPTIONS:
        default = f" (default {opt.default})" if opt.default not in (None, "0") else ""
        text = f"{opt.help}{default} [${opt.env}]"
        if opt.is_flag:
            p.add_argument(opt.flag, dest=opt.name, action="store_true", default=None, help=text)
        else:
            p.add_argument(opt.flag, dest=opt.name, default=None, metavar=opt.metavar, help=text)
        if opt.secret_file:
            p.add_argument(
                opt.flag + "-file",
                dest=opt.name + "_file",
                default=None,
                metavar="PATH",
                help=f"read {opt.flag[2:]} from a file [${opt.env}_FILE]",
            )
    p.add_argument(
        "--dev",
        action="store_true",
        help=(
            "local development: generate (once, under DATA_DIR/dev/) an app secret, a verify "
            "token and a self-signed certificate for localhost, print them, and serve HTTPS on "
            "127.0.0.1"
        ),
    )
    p.set_defaults(run=run)


def ensure_dev_materials(data_dir: Path) -> dict[str, str]:
    """Create (first time) and return the dev secret, token, certificate and key paths."""
    dev = data_dir / cfg.DEV_DIR
    dev.mkdir(parents=True, exist_ok=True)
    secret_path, token_path = dev / cfg.DEV_SECRET_FILE, dev / cfg.DEV_TOKEN_FILE
    cert_path, key_path = dev / cfg.DEV_CERT_FILE, dev / cfg.DEV_KEY_FILE
    for path in (secret_path, token_path):
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16) + "\n")
    if not (cert_path.exists() and key_path.exists()):
        tls.generate_self_signed(cert_path, key_path)
    return {
        "app_secret": secret_path.read_text().strip(),
        "verify_token": token_path.read_text().strip(),
        "tls_cert": str(cert_path),
        "tls_key": str(key_path),
        "http_host": "127.0.0.1",
        # Trying it out, every POST should show; in production only refusals do (see
        # WAHOOK_ACCESS_LOG).
        "access_log": "all",
    }


def _print_dev_banner(dev: dict[str, str], data_dir: Path) -> None:
    # The one place wahook prints a secret: these are throwaway local credentials the
    # developer needs to paste into Meta's dashboard or a test; production secrets
    # come from WAHOOK_APP_SECRET / *_FILE and are never printed or logged.
    d = data_dir / cfg.DEV_DIR
    print(
        "wahook serve --dev: local credentials (DEV ONLY, kept in "
        f"{d}/; flags and WAHOOK_* variables override them)\n"
        f"  app secret:    {dev['app_secret']}\n"
        f"  verify token:  {dev['verify_token']}\n"
        f"  certificate:   {dev['tls_cert']} (self-signed for localhost and 127.0.0.1)\n"
        "  try:           wahook send text   and   wahook tail --group demo",
        flush=True,
    )


def setup_logging(level: str) -> None:
    # Per-record work these lines never show (the logging HOWTO's "Optimization"): the
    # caller's file and line is a stack walk for every access log line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
    )


def loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The event loop WAHOOK_EVENT_LOOP picks (None: asyncio's own) and its name for the log.

    uvloop runs the same Tornado and grpc.aio code for ~3% less CPU per POST (its
    call_soon_threadsafe, the writer thread's wake-up of the loop, is an eventfd write in C):
    docs/decisions/0026-uvloop-and-hand-over-wait.md."""
    if choice == "asyncio":
        return None, "asyncio"
    try:
        import uvloop  # noqa: PLC0415 - optional: only when asked for or installed
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "WAHOOK_EVENT_LOOP=uvloop but uvloop is not installed (pip install uvloop)"
            ) from None
        return None, "asyncio (uvloop not installed)"
    return uvloop.new_event_loop, f"uvloop {importlib.metadata.version('uvloop')}"


def run(args: argparse.Namespace) -> int:
    env = os.environ
    flags = vars(args)
    try:
        dev_defaults = None
        if args.dev:
            data_dir = Path(flags.get("data_dir") or env.get("WAHOOK_DATA_DIR") or "./var")
            dev_defaults = ensure_dev_materials(data_dir)
            _print_dev_banner(dev_defaults, data_dir)
        config = cfg.load(flags, env, dev=args.dev, dev_defaults=dev_defaults)
    except WahookError as exc:
        print(f"wahook serve: {exc.message}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    # Imported after the config is known good: tornado and grpc are slow to import.
    from wahook.runtime import serve  # noqa: PLC0415

    def reload() -> cfg.Config:
        return cfg.load(flags, os.environ, dev=args.dev, dev_defaults=dev_defaults)

    try:
        factory, loop_name = loop_factory(config.event_loop)
        logging.getLogger("wahook").info("event loop: %s", loop_name)
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(serve(config, reload=reload))
    except WahookError as exc:
        print(f"wahook serve: {exc.message}", file=sys.stderr)
        return 1
