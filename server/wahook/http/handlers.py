"""Tornado handlers of the webhook front: /webhook, /healthz, /readyz, /metrics.

Handlers get their dependencies from the route table (``initialize(deps=...)``), never
from globals. ``JsonErrorHandler.write_error`` is the one seam where a WahookError (or
tornado's own HTTPError) becomes a status and a small JSON body; no library exception
text reaches a client.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import tornado.web

from wahook.errors import (
    LogUnavailableError,
    PayloadError,
    PayloadTooLargeError,
    SignatureError,
    VerificationError,
    WahookError,
)
from wahook.http.metrics import Metrics
from wahook.store.base import EventLog
from wahook.v1 import event_pb2

log = logging.getLogger("wahook.http")

DEV_NO_SIGNATURE_WARNING = (
    "signature check DISABLED (WAHOOK_DEV_NO_SIGNATURE): anyone can post events; dev only"
)


class Verifier(Protocol):
    """What the handler needs of wahook.core.signature.Keyring."""

    def verify(self, body: bytes, header: str | None) -> None: ...


Normalizer = Callable[[bytes, float], Sequence[event_pb2.Event]]
ChallengeCheck = Callable[[Mapping[str, str], str], str]


@dataclass
class WebhookDeps:
    """Everything the handlers use, built once by ``make_app``.

    ``keyring`` None means the dev-only no-signature mode. ``ready`` raises
    WahookError when the sidecar should not take traffic (log not writable, gRPC not
    serving, draining).
    """

    keyring: Verifier | None
    event_log: EventLog
    verify_token: str | None
    max_body_bytes: int
    normalize: Normalizer
    verify_challenge: ChallengeCheck
    ready: Callable[[], Awaitable[None]]
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    # Shutdown: once draining, new POSTs get 503 (Meta retries them elsewhere or later)
    # while the ones already in flight finish; the runtime waits for in_flight == 0.
    draining: bool = False
    in_flight: int = 0


def hard_body_limit(cap: int) -> int:
    """Bodies up to this are read (and dropped when over ``cap``) before a 413; longer
    announced lengths are refused at once and the connection closed."""
    return cap * 2 + 65536


class JsonErrorHandler(tornado.web.RequestHandler):
    """Base: JSON error bodies, no Server header, a name for metrics and access logs."""

    metric_name = "other"

    def set_default_headers(self) -> None:
        self.clear_header("Server")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info: tuple[type[BaseException], BaseException, TracebackType] | None = kwargs.get(
            "exc_info"
        )
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, WahookError):
            # Tornado sent a 500 for an exception it does not know; ours carry their status.
            self.set_status(exc.http_status)
            name, message = type(exc).__name__, exc.message
        elif isinstance(exc, tornado.web.HTTPError):
            name, message = "HTTPError", self._reason
        else:
            # An unexpected bug: log_exception logged the traceback; say nothing more.
            name, message = "InternalError", "internal error"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": name, "message": message}))

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, WahookError):
            # Expected outcomes (bad signature, oversized body, ...) are answered, not
            # logged as tracebacks; the access log line records the status.
            if value.http_status >= 500:
                log.warning("request failed: %s: %s", type(value).__name__, value.message)
            return
        super().log_exception(typ, value, tb)


@tornado.web.stream_request_body
class WebhookHandler(JsonErrorHandler):
    """GET: Meta's verification challenge. POST: verify, normalise, append, then 200."""

    metric_name = "webhook"
    deps: WebhookDeps

    def initialize(self, deps: WebhookDeps) -> None:
        self.deps = deps
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self.events_received: int | None = None  # for the access log
        self.events_new = 0
        self._counted = False
        self._in_post = False

    def prepare(self) -> None:
        # Other methods fall through to tornado's 405, raised after the (capped) body is
        # read, so the client is not cut off mid-send and sees the answer.
        length = self.request.headers.get("Content-Length")
        if length is not None and not length.isdigit():
            # Tornado rejects it only later, while reading the body; refuse it here.
            self.set_header("Connection", "close")
            raise PayloadError("Content-Length is not a number")
        if self.request.method != "POST":
            return
        if self.deps.draining:
            self.set_header("Connection", "close")
            raise LogUnavailableError("the sidecar is shutting down; retry")
        self.deps.in_flight += 1
        self._counted = True
        if length is not None and int(length) > self.deps.max_body_bytes:
            self._too_large = True
            if int(length) > hard_body_limit(self.deps.max_body_bytes):
                # Far too big to read and discard: refuse before the body. Raise tornado's
                # limit to the announced length so it does not also answer "400 Content-
                # Length too long" after our 413; the connection closes once the 413 is
                # sent, so the body is never read.
                self.request.connection.set_max_body_size(int(length))  # type: ignore[union-attr]
                self.set_header("Connection", "close")
                raise PayloadTooLargeError(
                    f"body of {length} bytes is over the {self.deps.max_body_bytes}-byte limit"
                )
            # Otherwise the body is read and dropped (data_received keeps nothing once
            # _too_large), and post() answers 413 to a client that finished sending.

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.deps.in_flight -= 1

    def on_finish(self) -> None:
        self._uncount()

    def on_connection_close(self) -> None:
        # A client gone mid-append: post() still finishes the append and uncounts then,
        # so a drain does not close the log under it.
        if not self._in_post:
            self._uncount()
        super().on_connection_close()

    def data_received(self, chunk: bytes) -> None:
        # Chunked bodies announce no length: count as they arrive and stop keeping them.
        self._size += len(chunk)
        if self._size > self.deps.max_body_bytes:
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large:
            self._chunks.append(chunk)

    def get(self) -> None:
        query = {k: self.get_query_argument(k, strip=False) for k in self.request.query_arguments}
        if self.deps.verify_token is None:
            raise VerificationError("no verify token is configured (set WAHOOK_VERIFY_TOKEN)")
        challenge = self.deps.verify_challenge(query, self.deps.verify_token)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(challenge.encode("utf-8"))

    async def post(self) -> None:
        self._in_post = True
        try:
            await self._post()
        finally:
            self._uncount()

    async def _post(self) -> None:
        deps = self.deps
        if self._too_large:
            raise PayloadTooLargeError(f"body is over the {deps.max_body_bytes}-byte limit")
        body = b"".join(self._chunks)
        self._chunks = []
        if deps.keyring is None:
            log.warning(DEV_NO_SIGNATURE_WARNING)
        else:
            try:
                deps.keyring.verify(body, self.request.headers.get("X-Hub-Signature-256"))
            except SignatureError:
                deps.metrics.signature_failures += 1
                raise
        events = deps.normalize(body, deps.clock())
        new = 0
        if events:
            try:
                result = await deps.event_log.append(events)
            except WahookError:
                raise
            except Exception as exc:
                # Any store failure is a 503 so that Meta retries; the cause goes to the log.
                log.exception("event log append failed")
                raise LogUnavailableError("the event log cannot take the write") from exc
            new = result.new_count
            deps.metrics.events_appended += new
            deps.metrics.events_duplicate += len(events) - new
        self.events_received, self.events_new = len(events), new
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"received": len(events), "new": new}))


class HealthHandler(JsonErrorHandler):
    """GET /healthz: the process is up and its loop answers."""

    metric_name = "healthz"

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(b"ok\n")


class ReadyHandler(JsonErrorHandler):
    """GET /readyz: 200 when the log is writable and gRPC serves, else 503 with the reason."""

    metric_name = "readyz"

    def initialize(self, deps: WebhookDeps) -> None:
        self.deps = deps

    async def get(self) -> None:
        try:
            await self.deps.ready()
        except WahookError as exc:
            self.set_status(503)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"ready": False, "reason": exc.message}))
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"ready": True}))


class MetricsHandler(JsonErrorHandler):
    """GET /metrics: Prometheus text format."""

    metric_name = "metrics"

    def initialize(self, deps: WebhookDeps) -> None:
        self.deps = deps

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.deps.metrics.render())


def access_log(metrics: Metrics) -> Callable[[tornado.web.RequestHandler], None]:
    """Tornado's log_function: one key=value line per request, and the request metrics.

    Logs the path without the query string (the verify token travels there) and never
    the body (message content).
    """
    access = logging.getLogger("wahook.access")

    def log_request(handler: tornado.web.RequestHandler) -> None:
        req = handler.request
        status = handler.get_status()
        seconds = req.request_time()
        name = getattr(handler, "metric_name", "other")
        metrics.observe_request(name, req.method or "", status, seconds)
        if not access.isEnabledFor(logging.INFO):
            return
        extra = ""
        if isinstance(handler, WebhookHandler) and handler.events_received is not None:
            extra = f" events={handler.events_received} new={handler.events_new}"
        access.info(
            "method=%s path=%s status=%d duration_ms=%.2f bytes_in=%s remote=%s%s",
            req.method,
            json.dumps(req.path),
            status,
            seconds * 1000.0,
            req.headers.get("Content-Length", "-"),
            req.remote_ip,
            extra,
        )

    return log_request
