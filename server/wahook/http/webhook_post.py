"""POST /webhook on Tornado's HTTP layer, without tornado.web's per-request machinery.

Meta's POSTs are the one hot path of the front: everything else (the GET challenge,
/healthz, /readyz, /metrics, any other method or path) goes to the tornado.web
Application as before. ``WebhookFront`` is the HTTPServer's delegate: for each request it
looks at the start line and either serves a ``POST /webhook`` itself (``_WebhookPost``)
or hands the request to the Application's own delegate.

Why: routing, the RequestHandler object with its header dicts, ``_execute``'s coroutine,
``flush`` and ``finish`` are about a third of the CPU of an empty 200, and a webhook
receiver needs none of them; the budget that frees pays for verifying, normalising and
the durable append (figures: docs/decisions/0007-http-delegate-fast-path.md).

Behaviour is the handler's, request for request: 413 for a body over the cap (refused
before the body when the announced length is far over it, else read and dropped so the
client sees the answer), 400 for a non-numeric Content-Length, 401 for a bad signature,
400 for a body that is not a JSON object, 503 while draining or when the log cannot take
the write, 200 with ``{"received": n, "new": m}`` only after the append is durable; the
same access log line and request metrics, and the answers (statuses, JSON bodies,
headers) of http.responses, which the handlers use too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Any

import tornado.httputil
import tornado.iostream
import tornado.web

from wahook.errors import LogUnavailableError, SignatureError, UriTooLongError, WahookError
from wahook.http import responses
from wahook.http.fast_conn import write_now
from wahook.http.handlers import DEV_NO_SIGNATURE_WARNING, WebhookDeps, log_access
from wahook.http.limits import MAX_REQUEST_LINE, FrontLimits
from wahook.store.base import AppendResult
from wahook.v1 import event_pb2

log = logging.getLogger("wahook.http")

_PATH = "/webhook"


class WebhookFront(tornado.httputil.HTTPServerConnectionDelegate):
    """The HTTPServer's delegate: ``POST /webhook`` here, every other request to ``app``.

    It also enforces ``limits``' timeouts by one sweep every fifth of the shortest: a
    connection waiting for a request is closed after ``idle_timeout`` with no byte of one,
    or ``header_timeout`` after its first byte; a request whose body has not all arrived
    ``body_timeout`` after its headers has its connection closed. Tornado's own timers
    (``idle_connection_timeout``, ``body_timeout``) arm and cancel a timer around every
    request's reads, ~10% of a minimal request's CPU (docs/architecture.md), where the
    sweep costs a dict entry per request.
    """

    def __init__(
        self,
        app: tornado.web.Application,
        deps: WebhookDeps,
        limits: FrontLimits | None = None,
    ) -> None:
        self.app = app
        self.deps = deps
        self.date = responses.DateHeader()
        self.limits = limits = limits or FrontLimits()
        self._period = min(limits.idle_timeout, limits.header_timeout, limits.body_timeout) / 5
        # Server connections waiting for a request's headers, and since when (loop time);
        # of those, the ones seen receiving a request head, and since when (a sweep's
        # time); requests reading their body, and since when.
        self._waiting: dict[Any, float] = {}
        self._heads: dict[Any, float] = {}
        self._bodies: dict[_WebhookPost, float] = {}
        # Connections that have sent a request: an idle flood's never have, so at the
        # cap those go first and the keep-alive connections Meta posts on stay.
        self._used: set[Any] = set()
        self._sweep: asyncio.TimerHandle | None = None
        # The running loop, looked up once: asyncio.get_running_loop() is a getpid()
        # system call each time (it checks for a fork), twice per POST otherwise.
        self._loop: asyncio.AbstractEventLoop | None = None

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._waiting[server_conn] = loop.time()
        if self._sweep is None:
            self._sweep = loop.call_later(self._period, self._close_late)
        return _WebhookPost(self, server_conn, request_conn)

    def request_started(self, post: _WebhookPost) -> None:
        """The connection's request has arrived (its headers): its body is awaited."""
        conn = post._server_conn
        self._waiting.pop(conn, None)
        self._heads.pop(conn, None)
        self._used.add(conn)
        loop = self._loop
        assert loop is not None  # start_request set it
        self._bodies[post] = loop.time()

    def request_read(self, post: _WebhookPost) -> None:
        """The request's body has all arrived (or its connection closed)."""
        self._bodies.pop(post, None)

    def on_close(self, server_conn: object) -> None:
        self._waiting.pop(server_conn, None)
        self._heads.pop(server_conn, None)
        self._used.discard(server_conn)
        self.app.on_close(server_conn)

    def evict_idle(self) -> bool:
        """Close a connection waiting with no byte of a request (at the connection cap,
        to make room): the longest waiting of those that never sent a request, else of
        all; False when there is none."""
        used = self._used
        for conn in sorted(self._waiting, key=lambda c: (c in used, self._waiting[c])):
            if conn not in self._heads and not conn.stream._read_buffer_size:
                del self._waiting[conn]
                conn.stream.close()
                return True
        return False

    def _close_late(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        limits = self.limits
        for conn, since in list(self._waiting.items()):
            head_since = self._heads.get(conn)
            if head_since is None and conn.stream._read_buffer_size:
                self._heads[conn] = head_since = now
            if (head_since is None and now - since >= limits.idle_timeout) or (
                head_since is not None and now - head_since >= limits.header_timeout
            ):
                del self._waiting[conn]
                self._heads.pop(conn, None)
                self._timed_out(conn)
        for post, since in list(self._bodies.items()):
            if now - since >= limits.body_timeout:
                del self._bodies[post]
                self._timed_out(post._server_conn)
        self._sweep = (
            loop.call_later(self._period, self._close_late)
            if self._waiting or self._bodies
            else None
        )

    def _timed_out(self, conn: Any) -> None:
        self.deps.metrics.http_timeouts += 1
        # Ends the connection's request loop, which then calls on_close.
        conn.stream.close()


class _WebhookPost(tornado.httputil.HTTPMessageDelegate):
    """One request on a connection: served here when it is ``POST /webhook``, else
    forwarded, call by call, to the Application's delegate."""

    __slots__ = (
        "_answered",
        "_appending",
        "_chunks",
        "_conn",
        "_counted",
        "_front",
        "_headers",
        "_keep_alive",
        "_length",
        "_other",
        "_server_conn",
        "_size",
        "_start",
        "_too_large",
    )

    def __init__(
        self,
        front: WebhookFront,
        server_conn: object,
        request_conn: tornado.httputil.HTTPConnection,
    ) -> None:
        self._front = front
        self._server_conn = server_conn
        self._conn = request_conn
        self._other: tornado.httputil.HTTPMessageDelegate | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._counted = False
        self._answered = False
        self._appending = False
        self._headers: tornado.httputil.HTTPHeaders | None = None
        self._keep_alive = False
        self._length = "-"
        self._start = 0.0

    # -- HTTPMessageDelegate -------------------------------------------------------------

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        self._front.request_started(self)
        if len(start_line.path) > MAX_REQUEST_LINE:
            self._start = time.time()
            self._refuse(
                UriTooLongError(f"the request target is over {MAX_REQUEST_LINE} bytes"),
                close=True,
            )
            return None
        if start_line.method != "POST" or start_line.path.partition("?")[0] != _PATH:
            self._other = self._front.app.start_request(self._server_conn, self._conn)
            return self._other.headers_received(start_line, headers)
        self._start = time.time()
        self._headers = headers
        # Tornado keeps an HTTP/1.1 connection open unless the client said otherwise
        # (HTTP1Connection._can_keep_alive); only then does a 200 take the short way.
        self._keep_alive = start_line.version == "HTTP/1.1" and (
            headers.get("Connection", "").lower() != "close"
        )
        deps = self._front.deps
        announced = headers.get("Content-Length")
        if announced is not None:
            self._length = announced
        try:
            length = responses.content_length(announced)
        except WahookError as exc:
            self._refuse(exc, close=True)
            return None
        if deps.drain.draining:
            self._refuse(LogUnavailableError("the sidecar is shutting down; retry"), close=True)
            return None
        if length is not None and length > deps.max_body_bytes:
            self._too_large = True
            if length > responses.hard_body_limit(deps.max_body_bytes):
                # Far too big to read and discard: answer before the body. Tornado's limit
                # rises to the announced length so it does not also answer "400 Content-
                # Length too long"; the connection closes once the 413 is written (the
                # request is answered before it was read), so the body is never read.
                self._conn.set_max_body_size(length)  # type: ignore[attr-defined]
                self._refuse(responses.too_large(deps.max_body_bytes, length), close=True)
            # Otherwise the body is read and dropped (data_received keeps nothing once
            # _too_large), and finish() answers 413 to a client that finished sending.
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self._other is not None:
            return self._other.data_received(chunk)
        # Chunked bodies announce no length: count as they arrive and stop keeping them.
        self._size += len(chunk)
        if self._size > self._front.deps.max_body_bytes:
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large:
            self._chunks.append(chunk)
        return None

    def finish(self) -> None:
        self._front.request_read(self)
        if self._other is not None:
            self._other.finish()
            return
        if self._answered:
            return
        deps = self._front.deps
        if deps.drain.draining:
            # The body arrived after the drain began: Meta retries it.
            self._refuse(LogUnavailableError("the sidecar is shutting down; retry"), close=True)
            return
        # Counted only now, with the body here: a stalled body must not hold up a drain.
        deps.drain.enter()
        self._counted = True
        try:
            events = self._events()
        except WahookError as exc:
            self._refuse(exc)
            return
        except Exception:
            log.exception("POST /webhook failed")
            self._internal_error()
            return
        if not events:
            self._answer_ok(0, 0)
            return
        try:
            # A future (EventLog.append), answered here by a callback: no task and no
            # coroutine frames per POST.
            appended = self._front.deps.event_log.append(events)
        except Exception as exc:  # raised by the call itself: nothing was queued
            self._append_failed(exc)
            return
        self._appending = True
        appended.add_done_callback(partial(self._appended, len(events)))

    def on_connection_close(self) -> None:
        self._front.request_read(self)
        if self._other is not None:
            self._other.on_connection_close()
            return
        # A client gone before its body arrived: nothing runs for it. A client gone
        # mid-append: the append still finishes and uncounts then, so a drain does
        # not close the log under it.
        if not self._answered and not self._appending:
            self._uncount()

    # -- the POST ------------------------------------------------------------------------

    def _events(self) -> Sequence[event_pb2.Event]:
        """The body, verified and normalised; raises the WahookError to answer with."""
        deps = self._front.deps
        if self._too_large:
            raise responses.too_large(deps.max_body_bytes)
        chunks, self._chunks = self._chunks, []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if deps.keyring is None:
            log.warning(DEV_NO_SIGNATURE_WARNING)
        else:
            assert self._headers is not None
            try:
                deps.keyring.verify(body, self._headers.get("X-Hub-Signature-256"))
            except SignatureError:
                deps.metrics.signature_failures += 1
                raise
        events = deps.normalize(body, deps.clock())
        if deps.allow is not None:
            deps.allow.mark(events)
        return events

    def _appended(self, received: int, appended: asyncio.Future[AppendResult]) -> None:
        self._appending = False
        if appended.cancelled():
            self._append_failed(asyncio.CancelledError())
            return
        exc = appended.exception()
        if exc is not None:
            self._append_failed(exc)
            return
        new = appended.result().new_count
        metrics = self._front.deps.metrics
        metrics.events_appended += new
        metrics.events_duplicate += received - new
        self._answer_ok(received, new)

    def _append_failed(self, exc: BaseException) -> None:
        if isinstance(exc, WahookError):
            self._refuse(exc)
            return
        # Any store failure is a 503 so that Meta retries; the cause goes to the log.
        log.error("event log append failed", exc_info=exc)
        self._refuse(LogUnavailableError("the event log cannot take the write"))

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._front.deps.drain.leave()

    def _answer_ok(self, received: int, new: int) -> None:
        body = responses.accepted_body(received, new)
        self._respond(200, body, close=False, extra=f" events={received} new={new}")

    def _refuse(self, exc: WahookError, *, close: bool = False) -> None:
        if exc.http_status >= 500:
            self._front.deps.failure_log.log(
                "request failed: %s: %s", type(exc).__name__, exc.message
            )
        status, body = responses.refusal(exc)
        self._respond(status, body, close=close)

    def _internal_error(self) -> None:
        self._respond(500, responses.INTERNAL_ERROR_BODY, close=False)

    def _respond(self, status: int, body: bytes, *, close: bool, extra: str = "") -> None:
        self._answered = True
        self._uncount()
        conn = self._conn
        stream = getattr(conn, "stream", None)
        if status == 200 and self._keep_alive and stream is not None:
            # The short way for the one answer Meta gets thousands of times a second: the
            # response bytes straight to the stream, then finish() for Tornado's bookkeeping
            # (the connection stays open, so it reads the next request). write_headers
            # builds an HTTPHeaders and checks every line for CR/LF, ~5% of a POST's CPU
            # here, for a response whose every byte is ours.
            try:
                write_now(stream, responses.ok_bytes(body, self._front.date.now_bytes()))
            except tornado.iostream.StreamClosedError:
                log.debug("response not written: connection gone")
            conn.finish()
            self._log(status, extra)
            return
        headers = responses.json_headers(len(body), self._front.date.now(), close=close)
        try:
            conn.write_headers(responses.start_line(status), headers, body)
            conn.finish()
        except tornado.httputil.HTTPOutputError:  # pragma: no cover - a closed stream
            log.debug("response not written: connection gone")
        self._log(status, extra)

    def _log(self, status: int, extra: str) -> None:
        context = getattr(self._conn, "context", None)
        deps = self._front.deps
        log_access(
            deps.metrics,
            deps.access_log,
            "webhook",
            status,
            time.time() - self._start,
            method="POST",
            path=_PATH,
            length=self._length,
            remote=getattr(context, "remote_ip", "-"),
            extra=extra,
        )
