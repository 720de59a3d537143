"""The webhook front's factories: ``build_deps``, ``make_app`` (routes) and ``make_http_server``.

The Application holds no globals: every handler gets the same ``WebhookDeps`` through
the route table, so a test builds an app around a real log on 127.0.0.1:0.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable

import tornado.httpserver
import tornado.iostream
import tornado.web

from wahook.core.challenge import verify_challenge
from wahook.core.normalize import normalize
from wahook.http.allowlist import AllowList
from wahook.http.fast_conn import FastServerConnection, read_with_recv
from wahook.http.handlers import (
    HealthHandler,
    MetricsHandler,
    ReadyHandler,
    Verifier,
    WebhookDeps,
    WebhookHandler,
    tornado_log_function,
)
from wahook.http.limits import MAX_HEAD_BYTES, Acceptor, FrontLimits, answer_oversized_head
from wahook.http.metrics import Metrics
from wahook.http.responses import hard_body_limit
from wahook.http.webhook_post import WebhookFront
from wahook.store.base import Appender


def build_deps(
    *,
    keyring: Verifier | None,
    event_log: Appender,
    verify_token: str | None,
    max_body_bytes: int = 4 * 1024 * 1024,
    metrics: Metrics | None = None,
    ready: Callable[[], Awaitable[None]] | None = None,
    clock: Callable[[], float] = time.time,
    access_log: str = "errors",
    allowed_phone_number_ids: frozenset[str] = frozenset(),
    allowed_waba_ids: frozenset[str] = frozenset(),
) -> WebhookDeps:
    """The handlers' dependencies with the core's normaliser and challenge check.
    ``keyring`` None disables signature checks (dev only); ``ready`` defaults to the
    log's ``check_writable``. With allowed ids, events of other numbers are marked
    misrouted (http.allowlist)."""
    metrics = metrics or Metrics()
    allow = None
    if allowed_phone_number_ids or allowed_waba_ids:
        allow = AllowList(allowed_phone_number_ids, allowed_waba_ids, metrics)
    return WebhookDeps(
        keyring=keyring,
        event_log=event_log,
        verify_token=verify_token,
        max_body_bytes=max_body_bytes,
        normalize=normalize,
        verify_challenge=verify_challenge,
        ready=ready or event_log.check_writable,
        metrics=metrics,
        clock=clock,
        access_log=access_log,
        allow=allow,
    )


def make_app(deps: WebhookDeps) -> tornado.web.Application:
    """The routes, each handler getting ``deps`` from the route table. ``POST /webhook``
    is served in front of this Application (see ``make_http_server``)."""
    return tornado.web.Application(
        [
            (r"/webhook", WebhookHandler, {"deps": deps}),
            (r"/healthz", HealthHandler),
            (r"/readyz", ReadyHandler, {"deps": deps}),
            (r"/metrics", MetricsHandler, {"deps": deps}),
        ],
        log_function=tornado_log_function(deps),
        # Tornado's defaults we do not want in a sidecar: no XSRF, no debug reloads,
        # no gzip (Meta's POSTs are small and the answers smaller).
        compress_response=False,
    )


def _nodelay_stays_on(value: bool) -> None:
    """IOStream.set_nodelay for the front's connections: TCP_NODELAY is on for good."""


class _FrontServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTPServer with TCP_NODELAY set once per connection, its own accept loop
    (http.limits.Acceptor: a connection cap, EMFILE backoff) and 414/431 answers for
    oversized request heads.

    Tornado's HTTP/1 connection turns TCP_NODELAY on in every response's ``finish`` and
    off again after it, two setsockopt calls per request; on loopback the first also
    pushes the response out inside the call (~4.5% of a POST's CPU: docs/architecture.md,
    "Why it is fast"). Every response here is written whole,
    so Nagle's algorithm has nothing to coalesce: the flag stays on and the per-request
    toggles do nothing.
    """

    front: WebhookFront
    limits: FrontLimits
    acceptors: list[Acceptor]

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        cap = self.limits.connection_cap()
        for sock in sockets:
            acceptor = Acceptor(
                sock,
                self._handle_connection,
                cap=cap,
                open_count=lambda: len(self._connections),
                evict_idle=self.front.evict_idle,
            )
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = acceptor.stop
            self.acceptors.append(acceptor)
            acceptor.start()

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[str, int]) -> None:
        stream.set_nodelay(True)
        stream.set_nodelay = _nodelay_stays_on  # type: ignore[method-assign]
        answer_oversized_head(stream)
        read_with_recv(stream)
        # HTTPServer.handle_stream, with the front's connection (http.fast_conn) in place
        # of Tornado's HTTP1ServerConnection, which it hands anything but a webhook POST.
        context = tornado.httpserver._HTTPRequestContext(
            stream, address, self.protocol, self.trusted_downstream
        )
        conn = FastServerConnection(stream, self.conn_params, context)
        self._connections.add(conn)  # type: ignore[arg-type]
        conn.start_serving(self)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        for acceptor in self.acceptors:
            acceptor.connection_closed()


def make_http_server(
    deps: WebhookDeps, ssl_ctx: ssl.SSLContext | None, *, limits: FrontLimits | None = None
) -> tornado.httpserver.HTTPServer:
    """The front's HTTPServer; HTTPS when ``ssl_ctx`` is given.

    ``POST /webhook`` is served by http.webhook_post.WebhookFront on Tornado's HTTP layer;
    every other request goes on to ``make_app(deps)``. ``limits`` (http.limits) caps the
    open connections and closes a connection idle, or sending a request's headers or body,
    for longer than its timeouts (by the front's sweep, not by Tornado's per-request
    timers: see WebhookFront).

    Tornado's own body limit is ``hard_body_limit`` (about twice the cap): the front
    answers 413 for an announced length over the cap (after draining the body when it
    is under the hard limit) and counts chunked bodies itself, so only a chunked body
    far over the cap meets tornado's blunt 400-and-close.
    """
    limits = limits or FrontLimits()
    front = WebhookFront(make_app(deps), deps, limits)
    server = _FrontServer(
        front,
        ssl_options=ssl_ctx,
        max_body_size=hard_body_limit(deps.max_body_bytes),
        max_header_size=MAX_HEAD_BYTES,
        # No body_timeout: it wraps every body read in a timer (~5% of a request's CPU
        # when profiled); WebhookFront's sweep enforces limits.body_timeout instead.
    )
    # No header timer per request either: WebhookFront sweeps connections instead.
    server.conn_params.header_timeout = None
    server.front, server.limits, server.acceptors = front, limits, []
    return server
