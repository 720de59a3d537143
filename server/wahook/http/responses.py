"""Every answer of the webhook front, built in one place: statuses, JSON bodies, headers and
the request checks that decide them before a body is read (Content-Length, body limits).

Two paths write the answers (docs/decisions/0007-http-delegate-fast-path.md, 0024): the
webhook POST's delegate (http.webhook_post) writes its bytes itself, on the front's own
connection (http.fast_conn) or Tornado's; tornado.web's handlers (http.handlers) answer
everything else. Both take their bodies, headers and checks from here, so a refusal reads
the same whichever path served it.
"""

from __future__ import annotations

import email.utils
import json
import time
from http.client import responses as _reasons

import tornado.httputil
import tornado.web

from wahook.errors import PayloadError, PayloadTooLargeError, WahookError

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# tornado.web's answers: no Server header, and no browser may sniff the challenge echo (a
# caller's text written back) as HTML.
HANDLER_HEADERS = (("X-Content-Type-Options", "nosniff"),)


# -- bodies ------------------------------------------------------------------------------


def error_body(name: str, message: str) -> bytes:
    """The JSON body of every refusal: ``{"error": name, "message": message}``."""
    return json.dumps({"error": name, "message": message}).encode()


# A bug: the traceback went to the log, the client learns nothing of it.
INTERNAL_ERROR_BODY = error_body("InternalError", "internal error")


def refusal(exc: WahookError) -> tuple[int, bytes]:
    """A WahookError's status and body: its class name and its message."""
    return exc.http_status, error_body(type(exc).__name__, exc.message)


def for_exception(exc: BaseException | None, status: int, reason: str) -> tuple[int, bytes]:
    """The status and body answering ``exc``, raised while tornado.web handled a request it
    would answer with ``status`` and ``reason``: a WahookError carries its own; Tornado's
    HTTPError (405, say) keeps its status and reason; anything else tells nothing."""
    if isinstance(exc, WahookError):
        return refusal(exc)
    if isinstance(exc, tornado.web.HTTPError):
        return status, error_body("HTTPError", reason)
    return status, INTERNAL_ERROR_BODY


def accepted_body(received: int, new: int) -> bytes:
    """The 200 of a stored webhook: events it held, and how many were not stored before."""
    return b'{"received": %d, "new": %d}' % (received, new)


def ready_body(reason: str | None) -> bytes:
    """/readyz's body: ready, or not and why (``reason``)."""
    if reason is None:
        return json.dumps({"ready": True}).encode()
    return json.dumps({"ready": False, "reason": reason}).encode()


# -- request checks ----------------------------------------------------------------------


def content_length(value: str | None) -> int | None:
    """The announced body length, None when there is none; a PayloadError (400) when it is
    not a number (Tornado would refuse it only later, while reading the body). ASCII digits
    only: "\xb2" (a superscript two) is a digit to ``str.isdigit`` but not to ``int``."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise PayloadError("Content-Length is not a number")
    return int(value)


def hard_body_limit(cap: int) -> int:
    """Bodies up to this are read (and dropped when over ``cap``) before a 413; longer
    announced lengths are refused at once and the connection closed."""
    return cap * 2 + 65536


def too_large(cap: int, length: int | None = None) -> PayloadTooLargeError:
    """The 413 for a body over ``cap`` bytes (of ``length`` bytes, when announced)."""
    if length is None:
        return PayloadTooLargeError(f"body is over the {cap}-byte limit")
    return PayloadTooLargeError(f"body of {length} bytes is over the {cap}-byte limit")


# -- heads -------------------------------------------------------------------------------


class DateHeader:
    """The Date header's value, formatted once per second rather than once per response."""

    __slots__ = ("_bytes", "_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""
        self._bytes = b""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = email.utils.formatdate(second, usegmt=True)
            self._bytes = self._value.encode("ascii")
        return self._value

    def now_bytes(self) -> bytes:
        self.now()
        return self._bytes


def start_line(status: int) -> tornado.httputil.ResponseStartLine:
    return tornado.httputil.ResponseStartLine("HTTP/1.1", status, _reasons.get(status, "Unknown"))


def json_headers(length: int, date: str, *, close: bool) -> tornado.httputil.HTTPHeaders:
    """The webhook delegate's headers for a JSON body of ``length`` bytes."""
    headers = tornado.httputil.HTTPHeaders()
    headers["Content-Type"] = JSON_TYPE
    headers["Content-Length"] = str(length)
    headers["Date"] = date
    if close:
        headers["Connection"] = "close"
    return headers


def ok_bytes(body: bytes, date: bytes) -> bytes:
    """A whole 200 with a JSON ``body``, byte for byte what ``head_bytes`` makes of
    ``json_headers`` (tests/unit/test_http_responses.py), for the short way of
    http.webhook_post: one format, no HTTPHeaders per answer."""
    return _OK % (len(body), date, body)


# The 200's head, its body after it (%s), for ok_bytes.
_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\n\r\n%s"
)


def head_bytes(
    line: tornado.httputil.ResponseStartLine, headers: tornado.httputil.HTTPHeaders
) -> bytes:
    """A response's status line and header fields, with the blank line that ends them."""
    lines = [f"HTTP/1.1 {line.code} {line.reason}"]
    lines += [f"{name}: {value}" for name, value in headers.get_all()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1")


def oversized_head_bytes(*, line_too_long: bool) -> bytes:
    """414 (the request line is too long) or 431 (the header fields are), then close."""
    status = b"414 URI Too Long" if line_too_long else b"431 Request Header Fields Too Large"
    return b"HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % status
