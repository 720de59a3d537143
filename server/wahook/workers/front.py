"""One front process of `wahook serve --workers N`: the webhook listener, and nothing else.

Started by the parent (wahook.workers.supervisor) as a fresh interpreter,
``python -m wahook.workers.front --fd FD --index I``, with one end of a socketpair. The
parent sends its serve flags first (``CONFIG``); the front builds the same Config from
them and its environment, binds the HTTP(S) port with SO_REUSEPORT (the kernel spreads
new connections over the fronts) and runs the same Tornado front as a single process
(fast_conn path, limits, TLS, /healthz, /readyz, the GET challenge) with its own keyring.

Appends: with SQLite, rows go to the parent's writer over the socket
(wahook.workers.handoff) and a POST is answered 200 only after the parent's commit is
durable; with Redis, the front appends to Redis itself, as a replica does. /readyz asks
the parent (its writer, its disk); /metrics shows this front's HTTP counters and the
parent's store and delivery ones.

Signals: SIGTERM drains (stop accepting, finish the POSTs in flight, each answered only
after durable) and exits 0; SIGHUP reloads the app secrets and verify token; SIGINT is
left to the parent. When the parent goes away (the socket ends) the front drains at once
-- its appends now fail with 503 -- and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
from functools import partial
from typing import Any

from wahook import tls
from wahook.commands.serve import load_config, loop_factory, setup_logging
from wahook.config import EVENT_LOOPS, Config
from wahook.errors import ConfigError, LogUnavailableError, WahookError
from wahook.http.app import build_deps, make_http_server
from wahook.http.metrics import Metrics
from wahook.runtime import (
    SECRET_FILES_EVERY,
    _front_limits,
    _keyring,
    _reload_on,
    drain_http,
    open_event_log,
    reload_front_secrets,
)
from wahook.store.base import Appender, EventLog
from wahook.workers.handoff import RemoteAppender

log = logging.getLogger("wahook.workers")


def listen_reuseport(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on ``host:port`` shared (SO_REUSEPORT) with the
    other fronts: the kernel hands each new connection to one of them."""
    family, _, _, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(addr, family=family, backlog=1024, reuse_port=True)
    sock.setblocking(False)
    return sock


def _set_metric(metrics: Metrics, name: str, kind: str, text: str, value: float) -> None:
    metrics.add_collector(name, kind, text, partial(float, value))


class Front:
    """A front's started parts; ``start`` then ``drain``."""

    def __init__(self, config: Config, parent: RemoteAppender, index: int) -> None:
        self.config = config
        self.parent = parent
        self.index = index
        self.metrics = Metrics()
        self.own_log: EventLog | None = None
        self.https: tls.ReloadingServerContext | None = None

    async def start(self) -> None:
        config = self.config
        ssl_ctx = None
        if not config.insecure_http:
            assert config.tls_cert is not None
            assert config.tls_key is not None
            self.https = tls.ReloadingServerContext(config.tls_cert, config.tls_key)
            ssl_ctx = self.https.context
        keyring = _keyring(config, quiet=True)  # the parent logged its warnings
        try:
            sock = listen_reuseport(config.http_host, config.http_port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {config.http_host}:{config.http_port}: {exc.strerror}"
            ) from None
        event_log: Appender = self.parent
        if config.store_url is not None:
            try:
                self.own_log = await open_event_log(config)
            except BaseException:
                sock.close()
                raise
            event_log = self.own_log
        metrics = self.metrics
        pid = os.getpid()
        _set_metric(metrics, "wahook_worker_pid", "gauge", "This front process's pid.", pid)
        _set_metric(
            metrics, "wahook_worker_index", "gauge", "This front's index (--workers).", self.index
        )
        metrics.refresh = self._refresh_metrics
        self.deps = build_deps(
            keyring=keyring,
            event_log=event_log,
            verify_token=config.verify_token.reveal() if config.verify_token else None,
            max_body_bytes=config.max_body_bytes,
            metrics=metrics,
            ready=self._ready,
            access_log=config.access_log,
            allowed_phone_number_ids=config.allowed_phone_number_ids,
            allowed_waba_ids=config.allowed_waba_ids,
        )
        self.http_server = make_http_server(self.deps, ssl_ctx, limits=_front_limits(config))
        self.http_server.add_sockets([sock])

    async def _ready(self) -> None:
        if self.deps.drain.draining:
            raise LogUnavailableError("shutting down")
        if self.own_log is not None:
            await self.own_log.check_writable()
        await self.parent.check_writable()

    async def _refresh_metrics(self) -> None:
        """The parent's collectors (store, delivery, gRPC) into this front's /metrics."""
        with contextlib.suppress(WahookError):  # the parent is going: this front's own
            for name, kind, text, value in await self.parent.parent_metrics():
                if name not in ("wahook_worker_pid", "wahook_worker_index"):
                    _set_metric(self.metrics, name, kind, text, value)

    def reload_certificates(self) -> None:
        if self.https is not None:
            self.https.reload_if_changed()

    def reload_secrets(self, new: Config) -> None:
        """The front's secrets: app secrets and verify token (the parent has the rest)."""
        changed = reload_front_secrets(self.deps, self.config, new)
        self.config = new
        if changed:
            log.info("secrets reloaded: %s", ", ".join(changed))

    async def drain(self) -> None:
        self.deps.drain.start()
        await drain_http(self.http_server, self.deps)
        if self.own_log is not None:
            await self.own_log.close()
        await self.parent.close()


async def run_front(sock: socket.socket, index: int, loop_name: str = "asyncio") -> int:
    """Serve as front ``index`` on the parent's socket ``sock`` until SIGTERM or the
    parent's end; the exit code (see the module docstring)."""
    loop = asyncio.get_running_loop()
    parent = RemoteAppender()
    spec_future: asyncio.Future[bytes] = loop.create_future()
    parent.on_config = lambda payload: (
        None if spec_future.done() else spec_future.set_result(payload)
    )
    await parent.connect(sock)
    lost: asyncio.Future[Any] = asyncio.ensure_future(parent.lost.wait())
    first: list[asyncio.Future[Any]] = [spec_future, lost]
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    if not spec_future.done():
        return 1  # the parent went away before saying what to serve
    spec = json.loads(spec_future.result())
    flags, dev = spec["flags"], spec["dev"]
    config = load_config(flags, dev)
    setup_logging(config.log_level, worker=index)
    front = Front(config, parent, index)
    await front.start()
    gc.collect()
    gc.freeze()  # as runtime.serve: docs/decisions/0019-gc-freeze.md
    stop = asyncio.Event()
    hup = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    parent.hello()
    log.info("front listening: pid=%d, event loop %s", os.getpid(), loop_name)
    reloader = asyncio.create_task(
        _reload_on(front, partial(load_config, flags, dev), hup, SECRET_FILES_EVERY)
    )
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopped, lost], return_when=asyncio.FIRST_COMPLETED)
    if lost.done() and not stop.is_set():
        log.warning("the parent process is gone: draining and exiting")
    reloader.cancel()
    for task in (stopped, lost):
        task.cancel()
    await front.drain()
    log.info("front stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wahook.workers.front")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--event-loop", default="auto", choices=EVENT_LOOPS)
    args = p.parse_args(argv)
    # Ctrl-C reaches the whole process group: the parent decides, and tells us (SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    try:
        factory, loop_name = loop_factory(args.event_loop)  # the parent's choice
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(run_front(sock, args.index, loop_name))
    except WahookError as exc:
        print(f"wahook serve worker {args.index}: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
