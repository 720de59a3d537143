"""The /webhook handler on a real Tornado server with a real SqliteEventLog.

GET answers Meta's verification; POST verifies, normalises, appends, and answers 200
only after the append; every refusal has its status and stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse

import pytest
from wahook import samples
from wahook.core.normalize import normalize
from wahook.errors import FailedPreconditionError, LogUnavailableError
from wahook.store.base import AppendResult, EventFilter
from wahook.v1 import event_pb2, status_pb2
from wahook_testkit import APP_SECRET, VERIFY_TOKEN, HttpFront, sign


async def stored(front: HttpFront) -> list[event_pb2.Event]:
    return await front.event_log.list_events(EventFilter(), 0, 0, 10_000)


def query(**params: str) -> str:
    return "/webhook?" + urllib.parse.urlencode({f"hub.{k}": v for k, v in params.items()})


# -- GET: verification ----------------------------------------------------------------


async def test_challenge_with_right_token_is_echoed_verbatim(http_front: HttpFront) -> None:
    # Leading zeros and spaces survive: the challenge is echoed as received, not parsed.
    challenge = "00123 456"
    r = await http_front.fetch(
        query(mode="subscribe", verify_token=VERIFY_TOKEN, challenge=challenge)
    )
    assert r.code == 200
    assert r.body == challenge.encode()
    assert r.headers["Content-Type"].startswith("text/plain")


async def test_challenge_with_wrong_token_is_403_and_not_echoed(http_front: HttpFront) -> None:
    r = await http_front.fetch(query(mode="subscribe", verify_token="nope", challenge="1158201444"))
    assert r.code == 403
    assert b"1158201444" not in r.body
    assert json.loads(r.body)["error"] == "VerificationError"


async def test_challenge_with_wrong_mode_is_403(http_front: HttpFront) -> None:
    r = await http_front.fetch(
        query(mode="unsubscribe", verify_token=VERIFY_TOKEN, challenge="1158201444")
    )
    assert r.code == 403
    assert b"1158201444" not in r.body


async def test_challenge_without_parameters_is_403(http_front: HttpFront) -> None:
    r = await http_front.fetch("/webhook")
    assert r.code == 403


# -- POST: accepted ---------------------------------------------------------------------


async def test_signed_post_is_stored_before_200(http_front: HttpFront) -> None:
    body = samples.body("text")
    r = await http_front.post_webhook(body)
    assert r.code == 200, r.body
    assert json.loads(r.body) == {"received": 1, "new": 1}
    events = await stored(http_front)
    assert len(events) == 1
    assert events[0].WhichOneof("payload") == "message"
    assert events[0].message.text.body == "Hello from wahook send"
    assert events[0].sequence == 1


async def test_same_post_again_is_200_and_stores_nothing_new(http_front: HttpFront) -> None:
    body = samples.body("image")
    first = await http_front.post_webhook(body)
    again = await http_front.post_webhook(body)
    assert json.loads(first.body) == {"received": 1, "new": 1}
    assert again.code == 200
    assert json.loads(again.body) == {"received": 1, "new": 0}
    assert len(await stored(http_front)) == 1


async def test_concurrent_copies_store_one_event(http_front: HttpFront) -> None:
    body = samples.body("location")
    answers = await asyncio.gather(*(http_front.post_webhook(body) for _ in range(10)))
    assert [a.code for a in answers] == [200] * 10
    assert sum(json.loads(a.body)["new"] for a in answers) == 1
    assert len(await stored(http_front)) == 1


async def test_non_whatsapp_object_is_200_with_no_events(http_front: HttpFront) -> None:
    body = b'{"object":"page","entry":[]}'
    r = await http_front.post_webhook(body)
    assert r.code == 200
    assert json.loads(r.body) == {"received": 0, "new": 0}
    assert await stored(http_front) == []


# -- POST: refused ----------------------------------------------------------------------


async def test_missing_signature_is_401_and_stores_nothing(http_front: HttpFront) -> None:
    r = await http_front.post_webhook(samples.body("text"), signature=None)
    assert r.code == 401
    assert json.loads(r.body)["error"] == "SignatureError"
    assert await stored(http_front) == []


async def test_wrong_signature_is_401_and_stores_nothing(http_front: HttpFront) -> None:
    body = samples.body("text")
    r = await http_front.post_webhook(body, signature=sign(body, "another-secret"))
    assert r.code == 401
    assert await stored(http_front) == []


async def test_signature_of_other_bytes_is_401(http_front: HttpFront) -> None:
    # Same JSON, different bytes: the signature covers the raw body, not its meaning.
    body = samples.body("text")
    reencoded = json.dumps(json.loads(body)).encode()
    r = await http_front.post_webhook(reencoded, signature=sign(body))
    assert r.code == 401
    assert await stored(http_front) == []


async def test_malformed_signature_is_401(http_front: HttpFront) -> None:
    for bad in ("sha1=abc", "sha256=zz", "sha256=" + "0" * 63, "garbage"):
        r = await http_front.post_webhook(samples.body("text"), signature=bad)
        assert r.code == 401, bad
    assert await stored(http_front) == []


async def test_invalid_json_is_400_and_stores_nothing(http_front: HttpFront) -> None:
    body = b'{"object": "whatsapp_business_account", "entry": ['
    r = await http_front.post_webhook(body)
    assert r.code == 400
    assert json.loads(r.body)["error"] == "PayloadError"
    assert await stored(http_front) == []


async def test_signature_checked_before_json(http_front: HttpFront) -> None:
    # An unsigned garbage body is a 401, not a 400: nothing about it is parsed.
    r = await http_front.post_webhook(b"not json", signature=None)
    assert r.code == 401


async def test_oversized_body_is_413_and_stores_nothing(http_front: HttpFront) -> None:
    body = json.dumps({"object": "whatsapp_business_account", "pad": "x" * 70_000}).encode()
    r = await http_front.post_webhook(body)
    assert r.code == 413
    assert json.loads(r.body)["error"] == "PayloadTooLargeError"
    assert await stored(http_front) == []


async def test_oversized_length_refused_before_body_is_sent(http_front: HttpFront) -> None:
    # Only the headers go out: the 413 must come without waiting for 10 MB of body.
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\nContent-Length: 10485760\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head
    assert await stored(http_front) == []


async def test_chunked_oversized_body_is_413(http_front: HttpFront) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    chunk = b"x" * 30_000
    req = b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    for _ in range(3):
        req += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    writer.write(req + b"0\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head


async def test_other_methods_are_405(http_front: HttpFront) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        r = await http_front.fetch("/webhook", method, body=b"{}")
        assert r.code == 405, method
        assert json.loads(r.body)["error"] == "HTTPError"
    assert await stored(http_front) == []


async def test_closed_log_is_503(http_front: HttpFront) -> None:
    await http_front.event_log.close()
    r = await http_front.post_webhook(samples.body("text"))
    assert r.code == 503
    assert json.loads(r.body)["error"] == "LogUnavailableError"


def failed(exc: Exception) -> asyncio.Future[AppendResult]:
    """An append's future that failed with ``exc`` (what a store answers when its write
    failed)."""
    future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


class FailingLog:
    """Fake for the failure path only: the store fails with something unexpected."""

    def append(self, events: object) -> asyncio.Future[AppendResult]:
        return failed(OSError("disk on fire"))

    async def check_writable(self) -> None:
        raise LogUnavailableError("disk on fire")


async def test_unexpected_store_failure_is_503_without_detail(http_front: HttpFront) -> None:
    http_front.deps.event_log = FailingLog()  # type: ignore[assignment]
    r = await http_front.post_webhook(samples.body("text"))
    assert r.code == 503
    assert b"disk on fire" not in r.body


class ConflictLog(FailingLog):
    """The store refuses with one of our errors whose status the front rarely sends."""

    def append(self, events: object) -> asyncio.Future[AppendResult]:
        return failed(FailedPreconditionError("held by another writer"))


async def test_any_wahook_error_from_the_store_is_answered_with_its_status(
    http_front: HttpFront,
) -> None:
    http_front.deps.event_log = ConflictLog()  # type: ignore[assignment]
    r = await http_front.post_webhook(samples.body("text"))
    assert (r.code, r.reason) == (409, "Conflict")
    assert json.loads(r.body)["error"] == "FailedPreconditionError"


async def test_draining_refuses_new_posts_with_503(http_front: HttpFront) -> None:
    http_front.deps.drain.start()
    r = await http_front.post_webhook(samples.body("text"))
    assert r.code == 503
    assert await stored(http_front) == []


async def test_every_sample_kind_is_accepted(http_front: HttpFront) -> None:
    for kind in samples.KINDS:
        r = await http_front.post_webhook(samples.body(kind))
        assert r.code == 200, (kind, r.body)
        assert json.loads(r.body)["new"] >= 1, kind
    events = await stored(http_front)
    assert len(events) == len(samples.KINDS)
    assert not [e for e in events if e.WhichOneof("payload") == "malformed"]


async def test_secret_never_in_responses(http_front: HttpFront) -> None:
    r = await http_front.post_webhook(samples.body("text"), signature="sha256=" + "1" * 64)
    assert APP_SECRET.encode() not in r.body


async def test_bad_content_length_is_400(http_front: HttpFront) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n{}")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 400"), head


async def test_modestly_oversized_body_is_drained_then_413_on_a_live_connection(
    http_front: HttpFront,
) -> None:
    # Over the cap but under the hard limit: the body is read and dropped, the client
    # gets its 413 without being cut off mid-send, and the connection stays usable.
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    body = b"x" * 100_000
    writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    writer.write(body)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert first.startswith(b"HTTP/1.1 413"), first
    length = int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert second.startswith(b"HTTP/1.1 200"), second
    assert await stored(http_front) == []


SAMPLE_CONTENT = {
    "text": "text",
    "image": "image",
    "audio": "audio",
    "video": "video",
    "document": "document",
    "sticker": "sticker",
    "location": "location",
    "contacts": "contacts",
    "button": "button",
    "button_reply": "interactive",
    "list_reply": "interactive",
    "flow": "interactive",
    "reaction": "reaction",
    "order": "order",
}


def test_each_sample_kind_is_what_it_says() -> None:
    for kind in samples.KINDS:
        (event,) = normalize(samples.body(kind), 1.0)
        if kind in SAMPLE_CONTENT:
            assert event.message.WhichOneof("content") == SAMPLE_CONTENT[kind], kind
        elif kind.startswith("status-"):
            state = status_pb2.DeliveryState.Name(event.status.state)
            assert state.endswith(kind.removeprefix("status-").upper()), kind
        else:
            assert event.WhichOneof("payload") == "template_status_update"
    (voice,) = normalize(samples.body("audio"), 1.0)
    assert voice.message.audio.voice
    (failed,) = normalize(samples.body("status-failed"), 1.0)
    assert failed.status.errors[0].code == 131047
    one, two = samples.body("text"), samples.body("text")
    assert normalize(one, 1.0)[0].id != normalize(two, 1.0)[0].id  # fresh ids each time


async def test_refusals_log_no_tracebacks(
    http_front: HttpFront, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await http_front.post_webhook(samples.body("text"), signature=None)
        await http_front.post_webhook(b"{", signature="sign")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_bug_is_a_500_that_tells_nothing(
    http_front: HttpFront, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(body: bytes, received_at: float) -> list[event_pb2.Event]:
        raise RuntimeError("internal detail 1555010")

    http_front.deps.normalize = broken
    with caplog.at_level(logging.ERROR):
        r = await http_front.post_webhook(samples.body("text"))
    assert r.code == 500
    assert json.loads(r.body) == {"error": "InternalError", "message": "internal error"}
    assert any(rec.exc_info for rec in caplog.records)  # the traceback went to the log


def _raw_post(body: bytes, version: bytes = b"HTTP/1.1", extra: bytes = b"") -> bytes:
    return (
        b"POST /webhook %s\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Hub-Signature-256: %s\r\nContent-Length: %d\r\n%s\r\n%s"
        % (version, sign(body).encode(), len(body), extra, body)
    )


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status, *lines = head[:-4].split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    body = await reader.readexactly(int(headers[b"Content-Length"]))
    return status, headers, body


async def test_keep_alive_connection_gets_each_200_whole(http_front: HttpFront) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    for _ in range(3):
        writer.write(_raw_post(samples.body("text")))  # new wamids each call
        status, headers, body = await _read_response(reader)
        assert status == b"HTTP/1.1 200 OK"
        assert headers[b"Content-Type"] == b"application/json"
        assert headers[b"Date"].endswith(b" GMT")
        assert b"Connection" not in headers
        assert json.loads(body) == {"received": 1, "new": 1}
    writer.close()
    assert await http_front.event_log.head_sequence() == 3


@pytest.mark.parametrize(
    ("version", "extra"),
    [(b"HTTP/1.1", b"Connection: close\r\n"), (b"HTTP/1.0", b"")],
)
async def test_a_client_that_does_not_keep_alive_gets_its_200_then_eof(
    http_front: HttpFront, version: bytes, extra: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(_raw_post(samples.body("text"), version, extra))
    status, _, body = await _read_response(reader)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body) == {"received": 1, "new": 1}
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it
    writer.close()
