"""The front's answers (http.responses): built in one place, they read the same whichever
path served the request: the webhook POST's delegate on the front's connection, the same
delegate on Tornado's connection, or a tornado.web handler."""

from __future__ import annotations

import asyncio
import json

import pytest
import tornado.web
from wahook.errors import LogUnavailableError, PayloadError, PayloadTooLargeError
from wahook.http import responses
from wahook_testkit import HttpFront

HANG_BOUND = 30.0


async def exchange(front: HttpFront, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` on a new connection; the status line, headers and body of its
    answer, read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), HANG_BOUND)  # to EOF: Connection: close
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return status, headers, body


@pytest.mark.parametrize("length", [b"12abc", b"\xb2"], ids=["letters", "superscript-two"])
@pytest.mark.parametrize(
    "start",
    [
        # The webhook delegate, on the front's own connection.
        b"POST /webhook HTTP/1.1",
        # The same delegate on Tornado's connection (HTTP/1.0 is handed to it).
        b"POST /webhook HTTP/1.0",
    ],
    ids=["fast-connection", "tornado-connection"],
)
async def test_a_bad_content_length_is_the_same_400_on_both_connections(
    http_front: HttpFront, start: bytes, length: bytes
) -> None:
    # "\xb2" is a digit to str.isdigit() but not to int().
    request = start + b"\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
    status, headers, body = await exchange(http_front, request)
    assert status == "HTTP/1.1 400 Bad Request"
    assert body == b'{"error": "PayloadError", "message": "Content-Length is not a number"}'
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"
    assert "server" not in headers


async def test_any_other_request_with_a_bad_content_length_is_tornados_400(
    http_front: HttpFront,
) -> None:
    # Tornado reads a request's body before its handler runs, so it refuses the length
    # itself: a bare 400, then it closes, as for any request it cannot parse.
    request = b"GET /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n"
    assert await exchange(http_front, request) == ("HTTP/1.1 400 Bad Request", {}, b"")


def test_the_short_200_is_what_the_long_way_writes() -> None:
    body = responses.accepted_body(3, 2)
    assert json.loads(body) == {"received": 3, "new": 2}
    date = responses.DateHeader()
    long_way = responses.head_bytes(
        responses.start_line(200), responses.json_headers(len(body), date.now(), close=False)
    )
    assert responses.ok_bytes(body, date.now_bytes()) == long_way + body


def test_a_closing_answer_says_so() -> None:
    head = responses.head_bytes(
        responses.start_line(503), responses.json_headers(7, "d", close=True)
    )
    assert head == (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: 7\r\nDate: d\r\nConnection: close\r\n\r\n"
    )


def test_an_error_is_answered_by_its_kind() -> None:
    down = LogUnavailableError("the event log cannot take the write")
    assert responses.for_exception(down, 500, "Internal Server Error") == (
        503,
        b'{"error": "LogUnavailableError", "message": "the event log cannot take the write"}',
    )
    assert responses.for_exception(down, 500, "x") == responses.refusal(down)
    not_allowed = tornado.web.HTTPError(405)
    assert responses.for_exception(not_allowed, 405, "Method Not Allowed") == (
        405,
        b'{"error": "HTTPError", "message": "Method Not Allowed"}',
    )
    # A bug tells nothing, at the status Tornado chose.
    bug = KeyError("secret-looking detail")
    assert responses.for_exception(bug, 500, "Internal Server Error") == (
        500,
        responses.INTERNAL_ERROR_BODY,
    )
    assert b"secret" not in responses.INTERNAL_ERROR_BODY
    assert responses.for_exception(None, 400, "Bad Request")[1] == responses.INTERNAL_ERROR_BODY


def test_content_length_is_a_number_or_absent() -> None:
    assert responses.content_length(None) is None
    assert responses.content_length("0") == 0
    assert responses.content_length("4096") == 4096
    for bad in ("", "-1", "12abc", " 5", "1e3", "\xb2", "\u0663"):
        with pytest.raises(PayloadError, match="Content-Length is not a number"):
            responses.content_length(bad)


def test_body_limits_and_their_413() -> None:
    assert responses.hard_body_limit(1000) == 67536
    announced = responses.too_large(1000, 5000)
    assert isinstance(announced, PayloadTooLargeError)
    assert announced.message == "body of 5000 bytes is over the 1000-byte limit"
    assert responses.too_large(1000).message == "body is over the 1000-byte limit"


def test_ready_and_oversized_head_answers() -> None:
    assert json.loads(responses.ready_body(None)) == {"ready": True}
    assert json.loads(responses.ready_body("log down")) == {"ready": False, "reason": "log down"}
    assert responses.oversized_head_bytes(line_too_long=True).startswith(
        b"HTTP/1.1 414 URI Too Long\r\n"
    )
    assert responses.oversized_head_bytes(line_too_long=False).startswith(
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    )
