"""The front's connection (http.fast_conn): plain webhook POSTs served on it, one after the
other on a kept-alive connection; anything else handed to Tornado's connection with the
request's bytes intact, so it is served or refused exactly as Tornado would."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import tornado.iostream
import tornado.netutil
from wahook import samples
from wahook.core.signature import Keyring
from wahook.http.app import build_deps, make_http_server
from wahook.http.fast_conn import parse_webhook_head, put_back, read_when_readable, write_now
from wahook.store.sqlite import SqliteEventLog
from wahook_testkit import APP_SECRET, HttpFront, sign


def post(body: bytes, *extra: bytes, signature: str | None = None) -> bytes:
    sig = (signature or sign(body)).encode()
    head = [b"POST /webhook HTTP/1.1", b"Host: x", b"X-Hub-Signature-256: " + sig]
    head += [b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 30)
    return status, headers, body


async def test_pipelined_posts_on_one_connection_are_answered_in_order(
    http_front: HttpFront,
) -> None:
    bodies = [samples.body("text"), samples.body("status-sent"), samples.body("image")]
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(b"".join(post(b) for b in bodies))  # all three in one write
    for _ in bodies:
        status, headers, body = await read_response(reader)
        assert (status, json.loads(body)) == (200, {"received": 1, "new": 1})
        assert "connection" not in headers  # kept alive
    # And the same connection takes more.
    writer.write(post(samples.body("text")))
    assert (await read_response(reader))[0] == 200
    writer.close()
    assert http_front.deps.metrics.events_appended == 4


async def test_a_request_in_pieces_is_put_together(http_front: HttpFront) -> None:
    request = post(samples.body("text"))
    head_end = request.index(b"\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    # The head in two writes, then the body in two, each after the server read the last.
    cuts = [0, head_end // 2, head_end + 4 + 10, len(request)]
    for start, stop in itertools.pairwise(cuts):
        writer.write(request[start:stop])
        await writer.drain()
        await asyncio.sleep(0.05)
    status, _, body = await read_response(reader)
    assert (status, json.loads(body)) == (200, {"received": 1, "new": 1})
    # A request whose head arrives with the end of the previous one's body.
    first, second = post(samples.body("text")), post(samples.body("image"))
    writer.write(first + second[:30])
    assert (await read_response(reader))[0] == 200
    writer.write(second[30:])
    assert (await read_response(reader))[0] == 200
    writer.close()
    assert http_front.deps.metrics.events_appended == 3


async def test_other_requests_on_a_webhook_connection_are_tornados(
    http_front: HttpFront,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(post(samples.body("text")))
    assert (await read_response(reader))[0] == 200
    # A GET after a POST on the same connection, then a POST again: from here on Tornado's
    # connection reads them, from the GET's first byte.
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + post(samples.body("reaction")))
    status, _, body = await read_response(reader)
    assert (status, body) == (200, b"ok\n")
    status, _, body = await read_response(reader)
    assert (status, json.loads(body)) == (200, {"received": 1, "new": 1})
    writer.close()
    assert http_front.deps.metrics.events_appended == 2


async def test_a_chunked_post_is_read_by_tornado_and_stored(http_front: HttpFront) -> None:
    body = samples.body("text")
    sig = sign(body).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(head + b"X-Hub-Signature-256: " + sig + b"\r\n\r\n" + chunked)
    status, _, answer = await read_response(reader)
    assert (status, json.loads(answer)) == (200, {"received": 1, "new": 1})
    writer.close()


async def test_connection_close_is_answered_and_the_connection_closed(
    http_front: HttpFront,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(post(samples.body("text"), b"Connection: close"))
    status, headers, _ = await read_response(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()


async def test_a_bad_signature_is_refused_and_the_connection_kept(http_front: HttpFront) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(post(samples.body("text"), signature="sha256=" + "0" * 64))
    status, _, body = await read_response(reader)
    assert (status, json.loads(body)["error"]) == (401, "SignatureError")
    writer.write(post(samples.body("text")))
    assert (await read_response(reader))[0] == 200
    writer.close()
    assert http_front.deps.metrics.events_appended == 1


async def test_a_malformed_header_line_gets_tornados_400(http_front: HttpFront) -> None:
    body = samples.body("text")
    reader, writer = await asyncio.open_connection("127.0.0.1", http_front.port)
    writer.write(post(body, b"No colon here"))
    data = await asyncio.wait_for(reader.read(), 30)
    assert data.startswith(b"HTTP/1.1 400 ")
    writer.close()
    assert http_front.deps.metrics.events_appended == 0


async def test_close_all_connections_ends_kept_alive_ones(tmp_path: Path) -> None:
    event_log = await SqliteEventLog.open(tmp_path / "e.sqlite3")
    deps = build_deps(keyring=Keyring([APP_SECRET]), event_log=event_log, verify_token="t")
    server = make_http_server(deps, None)
    socks = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(socks)
    port = socks[0].getsockname()[1]
    # One connection kept alive by the fast path, one handed to Tornado's connection.
    fast = await asyncio.open_connection("127.0.0.1", port)
    fast[1].write(post(samples.body("text")))
    assert (await read_response(fast[0]))[0] == 200
    other = await asyncio.open_connection("127.0.0.1", port)
    other[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(other[0]))[0] == 200
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 30)
    for reader, writer in (fast, other):
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
    await event_log.close()


def _head(*lines: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_parse_keeps_the_headers_the_webhook_delegate_reads() -> None:
    parsed = parse_webhook_head(
        _head(
            b"POST /webhook?x=1 HTTP/1.1",
            b"Host: x",
            b"content-length:  12 ",
            b"X-Hub-Signature-256: sha256=ab",
            b"User-Agent: facebookexternalua",
        )
    )
    assert parsed is not None
    target, headers = parsed
    assert target == "/webhook?x=1"
    assert dict(headers) == {"Content-Length": "12", "X-Hub-Signature-256": "sha256=ab"}
    # Names are matched whole and in any case; a name that only ends like one is not it.
    parsed = parse_webhook_head(
        _head(
            b"POST /webhook HTTP/1.1", b"X-Content-Length: 9", b"CONTENT-LENGTH: 3", b"X-Expect: 1"
        )
    )
    assert parsed is not None
    assert dict(parsed[1]) == {"Content-Length": "3"}
    # Bare LF line ends and a leading blank line, as Tornado tolerates.
    lf = b"\nPOST /webhook HTTP/1.1\nContent-Length: 0\n\n"
    assert parse_webhook_head(lf) is not None


@pytest.mark.parametrize(
    "head",
    [
        _head(b"GET /webhook HTTP/1.1", b"Content-Length: 0"),
        _head(b"POST /webhook HTTP/1.0", b"Content-Length: 0"),
        _head(b"POST /webhooks HTTP/1.1", b"Content-Length: 0"),
        _head(b"POST /webhook HTTP/1.1 extra", b"Content-Length: 0"),
        _head(b"POST /webhook HTTP/1.1", b"Host: x"),  # no Content-Length
        _head(b"POST /webhook HTTP/1.1", b"Content-Length: 1", b"Content-Length: 1"),
        _head(b"POST /webhook HTTP/1.1", b"Content-Length: 0", b"Transfer-Encoding: chunked"),
        _head(b"POST /webhook HTTP/1.1", b"Content-Length: 0", b"Expect: 100-continue"),
        _head(b"POST /webhook HTTP/1.1", b"Content-Length : 0"),
        _head(b"POST /webhook HTTP/1.1", b"Content-Length: 0", b" folded"),
        _head(b"POST /webhook HTTP/1.1", b"Content-Length: 0", b"X-A: a\x00b"),
    ],
)
def test_parse_leaves_every_other_head_to_tornado(head: bytes) -> None:
    assert parse_webhook_head(head) is None


async def test_write_now_queues_what_a_full_socket_does_not_take() -> None:
    # The direct send takes what the kernel takes; the rest, and anything written while
    # some is queued, goes through the stream in order, so the peer reads every byte.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    stream = tornado.iostream.IOStream(ours)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than the socket takes at once
    write_now(stream, big)  # part sent, the rest queued
    assert stream._write_buffer
    write_now(stream, b"after")  # queued behind it, not sent ahead of it
    write_now(stream, b"")
    received = bytearray()
    peer.settimeout(30)
    loop = asyncio.get_running_loop()
    while len(received) < len(big) + len(b"after"):
        chunk = await loop.run_in_executor(None, peer.recv, 1 << 20)
        assert chunk, "the connection closed early"
        received += chunk
    assert bytes(received) == big + b"after"
    stream.close()
    # A closed stream refuses the write as IOStream.write does (the delegate expects that).
    with pytest.raises(tornado.iostream.StreamClosedError):
        write_now(stream, b"late")
    peer.close()


async def test_read_when_readable_reads_the_socket_only_once_it_is_readable() -> None:
    # Nothing buffered (the client has not sent its next request yet): no read until the
    # socket is readable, where read_bytes would try it at once (a zeroed 64 KiB buffer
    # for an EAGAIN), then one read serves the request.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    stream = tornado.iostream.IOStream(ours)
    reads: list[int | None] = []
    read_from_fd = stream.read_from_fd

    def read_seen(buf: Any) -> int | None:
        reads.append(read_from_fd(buf))
        return reads[-1]

    stream.read_from_fd = read_seen  # type: ignore[method-assign]
    data = read_when_readable(stream, 65536)
    assert reads == []
    assert not data.done()
    peer.sendall(b"POST /webhook")
    assert await asyncio.wait_for(data, 30) == b"POST /webhook"
    assert reads == [13]
    # Bytes already buffered (a pipelined request put back) are served without a read.
    put_back(stream, b"pipelined")
    assert await asyncio.wait_for(read_when_readable(stream, 65536), 30) == b"pipelined"
    assert reads == [13]
    # The client leaving first fails the waiting read, as read_bytes' would.
    data = read_when_readable(stream, 65536)
    peer.close()
    with pytest.raises(tornado.iostream.StreamClosedError):
        await asyncio.wait_for(data, 30)
    assert stream.closed()
    with pytest.raises(tornado.iostream.StreamClosedError):
        read_when_readable(stream, 65536)


async def test_a_client_gone_mid_append_gets_nothing_and_breaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The append finishes after the connection closed: its 200 is dropped quietly, the
    # request is counted and logged, and the front serves the next connection.
    event_log = await SqliteEventLog.open(tmp_path / "e.sqlite3")
    deps = build_deps(keyring=Keyring([APP_SECRET]), event_log=event_log, verify_token="t")
    server = make_http_server(deps, None)
    socks = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(socks)
    port = socks[0].getsockname()[1]
    append = event_log.append
    # The real append, answered to the front only once the test releases it.
    released: list[asyncio.Future[None]] = []

    def append_when_released(events: Any) -> asyncio.Future[Any]:
        stored = append(events)
        answer = asyncio.get_running_loop().create_future()
        release = asyncio.get_running_loop().create_future()
        release.add_done_callback(
            lambda _: stored.add_done_callback(lambda f: answer.set_result(f.result()))
        )
        released.append(release)
        return answer

    event_log.append = append_when_released  # type: ignore[method-assign]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(samples.body("text")))
    async with asyncio.timeout(30):
        while not released:  # noqa: ASYNC110 - waits for the front to reach the append
            await asyncio.sleep(0.01)
        writer.close()
        while server._connections:  # noqa: ASYNC110 - the front sees the close
            await asyncio.sleep(0.01)
    released[0].set_result(None)
    async with asyncio.timeout(30):
        while deps.drain.in_flight or deps.metrics.events_appended == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    event_log.append = append  # type: ignore[method-assign]
    again = await asyncio.open_connection("127.0.0.1", port)
    again[1].write(post(samples.body("text")))
    assert (await read_response(again[0]))[0] == 200
    again[1].close()
    server.stop()
    await asyncio.wait_for(server.close_all_connections(), 30)
    await event_log.close()
