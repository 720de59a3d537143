"""Tornado handlers of the webhook front: /webhook, /healthz, /readyz, /metrics.

Handlers get their dependencies from the route table (``initialize(deps=...)``), never
from globals. ``JsonErrorHandler.write_error`` is where a WahookError (or tornado's own
HTTPError) raised here becomes a status and a small JSON body, built by http.responses as
the webhook POST's are; no library exception text reaches a client.
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

from wahook.errors import VerificationError, WahookError
from wahook.http import responses
from wahook.http.allowlist import AllowList
from wahook.http.drain import Drain
from wahook.http.metrics import Metrics
from wahook.ratelog import RateLimitedLog
from wahook.store.base import Appender
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
    event_log: Appender
    verify_token: str | None
    max_body_bytes: int
    normalize: Normalizer
    verify_challenge: ChallengeCheck
    ready: Callable[[], Awaitable[None]]
    metrics: Metrics = field(default_factory=Metrics)
    # Which requests get an access log line: "all", "errors" (status >= 400) or "off".
    access_log: str = "errors"
    clock: Callable[[], float] = time.time
    # Shutdown: once draining, new POSTs get 503 while the ones in flight finish.
    drain: Drain = field(default_factory=Drain)
    # Marks events of numbers not on the allow-list (http.allowlist); None: no list.
    allow: AllowList | None = None
    # Refusals of 500 and up (a 503 per POST while the log is down): one line per 10 s.
    failure_log: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))


class JsonErrorHandler(tornado.web.RequestHandler):
    """Base: JSON error bodies, no Server header, a name for metrics and access logs."""

    metric_name = "other"

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        for name, value in responses.HANDLER_HEADERS:
            self.set_header(name, value)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info: tuple[type[BaseException], BaseException, TracebackType] | None = kwargs.get(
            "exc_info"
        )
        # Tornado chose a 500 for an exception it does not know; ours carry their status.
        # An unexpected bug: log_exception logged the traceback; the body says nothing.
        status, body = responses.for_exception(
            exc_info[1] if exc_info else None, status_code, self._reason
        )
        if status != status_code:  # (set_status would also reset an HTTPError's reason)
            self.set_status(status)
        self.set_header("Content-Type", responses.JSON_TYPE)
        self.finish(body)

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
                deps: WebhookDeps | None = getattr(self, "deps", None)
                if deps is not None:
                    deps.failure_log.log(
                        "request failed: %s: %s", type(value).__name__, value.message
                    )
            return
        super().log_exception(typ, value, tb)


class WebhookHandler(JsonErrorHandler):
    """GET /webhook: Meta's verification challenge; other methods but POST get 405.

    ``POST /webhook`` never reaches this class: http.webhook_post serves it on Tornado's
    HTTP layer directly (see there why). Nor does a request with a Content-Length that is
    not a number: Tornado reads the body before a handler runs, and answers it 400 itself.
    """

    metric_name = "webhook"
    deps: WebhookDeps

    def initialize(self, deps: WebhookDeps) -> None:
        self.deps = deps

    def get(self) -> None:
        query = {k: self.get_query_argument(k, strip=False) for k in self.request.query_arguments}
        if self.deps.verify_token is None:
            raise VerificationError("no verify token is configured (set WAHOOK_VERIFY_TOKEN)")
        challenge = self.deps.verify_challenge(query, self.deps.verify_token)
        self.set_header("Content-Type", responses.TEXT_TYPE)
        self.finish(challenge.encode("utf-8"))


class HealthHandler(JsonErrorHandler):
    """GET /healthz: the process is up and its loop answers."""

    metric_name = "healthz"

    def get(self) -> None:
        self.set_header("Content-Type", responses.TEXT_TYPE)
        self.finish(b"ok\n")


class ReadyHandler(JsonErrorHandler):
    """GET /readyz: 200 when the log is writable and gRPC serves, else 503 with the reason."""

    metric_name = "readyz"

    def initialize(self, deps: WebhookDeps) -> None:
        self.deps = deps

    async def get(self) -> None:
        reason = None
        try:
            await self.deps.ready()
        except WahookError as exc:
            self.set_status(503)
            reason = exc.message
        self.set_header("Content-Type", responses.JSON_TYPE)
        self.finish(responses.ready_body(reason))


class MetricsHandler(JsonErrorHandler):
    """GET /metrics: Prometheus text format."""

    metric_name = "metrics"

    def initialize(self, deps: WebhookDeps) -> None:
        self.deps = deps

    async def get(self) -> None:
        metrics = self.deps.metrics
        if metrics.refresh is not None:
            await metrics.refresh()
        self.set_header("Content-Type", responses.METRICS_TYPE)
        self.finish(metrics.render())


_access = logging.getLogger("wahook.access")


def log_access(
    metrics: Metrics,
    which: str,
    name: str,
    status: int,
    seconds: float,
    *,
    method: str,
    path: str,
    length: str,
    remote: str,
    extra: str = "",
) -> None:
    """Count the request in the metrics and, as ``which`` says (all / errors / off), write
    its access log line (key=value).

    Logs the path without the query string (the verify token travels there) and never
    the body (message content). Why "errors" is the default: a line per POST at Meta's
    rates is a lot of lines and a noticeable part of a POST's CPU
    (docs/decisions/0012-access-log-refusals-only.md); /metrics counts every request anyway.
    """
    metrics.observe_request(name, method, status, seconds)
    if which == "off" or (which == "errors" and status < 400):
        return
    if not _access.isEnabledFor(logging.INFO):
        return
    _access.info(
        "method=%s path=%s status=%d duration_ms=%.2f bytes_in=%s remote=%s%s",
        method,
        json.dumps(path),
        status,
        seconds * 1000.0,
        length,
        remote,
        extra,
    )


def tornado_log_function(deps: WebhookDeps) -> Callable[[tornado.web.RequestHandler], None]:
    """Tornado's log_function for the Application's requests (see ``log_access``)."""

    def log_request(handler: tornado.web.RequestHandler) -> None:
        req = handler.request
        log_access(
            deps.metrics,
            deps.access_log,
            getattr(handler, "metric_name", "other"),
            handler.get_status(),
            req.request_time(),
            method=req.method or "",
            path=req.path,
            length=req.headers.get("Content-Length", "-"),
            remote=req.remote_ip or "-",
        )

    return log_request
