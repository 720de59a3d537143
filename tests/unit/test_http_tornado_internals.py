"""Every Tornado internal the front uses, checked against the installed Tornado.

The front (http.fast_conn, http.webhook_post, http.app, http.limits) reaches below
Tornado's public API where that saves a POST's CPU (docs/decisions/0007, 0024). A Tornado
release may move any of it, so pyproject.toml bounds Tornado to the minor version it was
checked against, and this file names each internal, who uses it and what is assumed of it:
an upgrade that moves one fails here, by name, before it fails obscurely elsewhere.
To raise the bound: install the new Tornado, run this file, fix what it names.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
import struct
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import tornado
import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.iostream
import tornado.tcpserver
from wahook.http.fast_conn import _HEAD_END, put_back, read_with_recv
from wahook.http.limits import MAX_HEAD_BYTES, answer_oversized_head

ROOT = Path(__file__).resolve().parents[2]
# The minor version the internals below were checked against; pyproject.toml says <6.7.
CHECKED = (6, 6)
HANG_BOUND = 30.0


def test_tornado_is_the_version_the_internals_were_checked_against() -> None:
    assert tornado.version_info[:2] == CHECKED, (
        f"Tornado {tornado.version} is installed; the front's internals were checked against "
        f"{CHECKED[0]}.{CHECKED[1]}: run this file against it, then move CHECKED and the bound"
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [requirement] = [d for d in project["dependencies"] if d.startswith("tornado")]
    assert requirement == f"tornado>={CHECKED[0]}.{CHECKED[1]},<{CHECKED[0]}.{CHECKED[1] + 1}"


@pytest.fixture
async def stream_pair() -> AsyncIterator[tuple[tornado.iostream.IOStream, socket.socket]]:
    """A Tornado IOStream on a TCP connection over loopback, and the plain socket at the
    connection's other end."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    stream = tornado.iostream.IOStream(ours)
    yield stream, theirs
    stream.close()
    theirs.close()


# -- IOStream ----------------------------------------------------------------------------


async def test_iostream_read_buffer_takes_bytes_put_back(
    stream_pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    # _read_buffer (a bytearray) and _read_buffer_size: fast_conn.put_back puts a request's
    # bytes back for Tornado's connection; WebhookFront's sweeps read the size as "a
    # request under way"; limits.answer_oversized_head searches the buffer.
    stream, peer = stream_pair
    assert type(stream._read_buffer) is bytearray
    assert stream._read_buffer_size == 0
    peer.sendall(b"second request")
    first = await asyncio.wait_for(stream.read_bytes(6, partial=True), HANG_BOUND)
    put_back(stream, first)
    assert stream._read_buffer_size == len(stream._read_buffer) >= len(first)
    read = await asyncio.wait_for(stream.read_bytes(len(b"second request")), HANG_BOUND)
    assert read == b"second request"
    assert stream._read_buffer_size == 0


def test_iostream_reads_the_socket_through_read_to_buffer() -> None:
    # fast_conn.read_with_recv replaces _read_to_buffer on a plain stream's instance: every
    # socket read goes through it (from _read_to_buffer_loop), it returns the bytes read
    # (0: none now, None: reset) after adding them to _read_buffer and _read_buffer_size,
    # and a read_into (_user_read_buffer) reads into the caller's buffer instead.
    loop = inspect.getsource(tornado.iostream.BaseIOStream._read_to_buffer_loop)
    assert "if self._read_to_buffer() == 0:" in loop
    own = inspect.getsource(tornado.iostream.BaseIOStream._read_to_buffer)
    for line in (
        "if self._user_read_buffer:",
        "buf = bytearray(self.read_chunk_size)",
        "self._read_buffer += view",
        "self._read_buffer_size += bytes_read",
        "if self._is_connreset(e):",
        "if self._read_buffer_size > self.max_buffer_size:",
    ):
        assert line in own, f"_read_to_buffer no longer does {line}"
    assert "_read_to_buffer" not in getattr(tornado.iostream.IOStream, "__slots__", ())


async def test_a_stream_reading_with_recv_reads_as_tornados_does(
    stream_pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    stream, peer = stream_pair
    read_with_recv(stream)
    peer.sendall(b"first")
    assert await asyncio.wait_for(stream.read_bytes(100, partial=True), HANG_BOUND) == b"first"
    assert stream._read_buffer_size == 0
    peer.sendall(b"second request")
    buf = bytearray(6)
    assert await asyncio.wait_for(stream.read_into(buf), HANG_BOUND) == 6
    assert buf == b"second"
    read = await asyncio.wait_for(stream.read_bytes(8), HANG_BOUND)
    assert read == b" request"
    peer.close()
    with pytest.raises(tornado.iostream.StreamClosedError):
        await asyncio.wait_for(stream.read_bytes(1), HANG_BOUND)


async def test_a_stream_reading_with_recv_refuses_more_than_its_buffer_holds() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    stream = tornado.iostream.IOStream(ours, max_buffer_size=10)
    read_with_recv(stream)
    with peer:
        peer.sendall(b"x" * 11)
        # Raised by read_until when the bytes are there already, else failing its future.
        refused = (tornado.iostream.StreamBufferFullError, tornado.iostream.StreamClosedError)
        with pytest.raises(refused):
            await asyncio.wait_for(stream.read_until(b"\n"), HANG_BOUND)
        assert stream.closed()
        assert isinstance(stream.error, tornado.iostream.StreamBufferFullError)


async def test_a_reset_closes_a_stream_reading_with_recv(
    stream_pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    stream, peer = stream_pair
    read_with_recv(stream)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # linger 0: the close sends a reset
    with pytest.raises(tornado.iostream.StreamClosedError):
        await asyncio.wait_for(stream.read_bytes(1), HANG_BOUND)
    assert isinstance(stream.error, ConnectionResetError)


def test_a_tls_stream_keeps_tornados_read() -> None:
    stream = object.__new__(tornado.iostream.SSLIOStream)
    read_with_recv(stream)
    assert "_read_to_buffer" not in vars(stream)


def test_iostream_read_bytes_is_a_started_read_and_an_inline_try() -> None:
    # fast_conn.read_when_readable is read_bytes less its inline read: _start_read() makes
    # the pending read's future, _read_bytes and _read_partial describe it, and
    # _add_io_state(READ) waits for the socket, whose handler (_handle_read) serves it.
    read_bytes = inspect.getsource(tornado.iostream.BaseIOStream.read_bytes)
    for line in (
        "future = self._start_read()",
        "self._read_bytes = num_bytes",
        "self._read_partial = partial",
        "self._try_inline_read()",
    ):
        assert line in read_bytes, f"read_bytes no longer does {line}"
    inline = inspect.getsource(tornado.iostream.BaseIOStream._try_inline_read)
    assert inline.rstrip().endswith("self._add_io_state(ioloop.IOLoop.READ)")
    handle = inspect.getsource(tornado.iostream.BaseIOStream._handle_events)
    assert "self._handle_read()" in handle
    find = inspect.getsource(tornado.iostream.BaseIOStream._find_read_pos)
    assert "self._read_partial and self._read_buffer_size > 0" in find


async def test_iostream_write_buffer_is_empty_until_the_socket_is_full(
    stream_pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    # _write_buffer's len(): fast_conn.write_now sends straight to stream.socket only when
    # nothing is queued before it.
    stream, _peer = stream_pair
    assert len(stream._write_buffer) == 0
    assert not stream._write_buffer
    assert isinstance(stream.socket, socket.socket)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stream.write(b"x" * (8 * 1024 * 1024))  # more than the socket takes: the rest queues
    assert len(stream._write_buffer) > 0


async def test_iostream_closes_with_the_unsatisfiable_read_over_max_bytes(
    stream_pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    # limits.answer_oversized_head wraps stream.close: Tornado closes a stream whose
    # read_until_regex passed max_bytes with close(exc_info=UnsatisfiableReadError), the
    # limit still in _read_max_bytes and the bytes read still in _read_buffer.
    stream, peer = stream_pair
    seen: list[object] = []
    close = stream.close

    def close_seeing(exc_info: object = False) -> None:
        seen.append((exc_info, stream._read_max_bytes, bytes(stream._read_buffer[:5])))
        close(exc_info)  # type: ignore[arg-type]

    stream.close = close_seeing  # type: ignore[method-assign]
    peer.sendall(b"GET /" + b"a" * 200)
    with pytest.raises(tornado.iostream.StreamClosedError):
        await asyncio.wait_for(stream.read_until_regex(_HEAD_END, max_bytes=100), HANG_BOUND)
    [(exc_info, max_bytes, start)] = seen
    assert isinstance(exc_info, tornado.iostream.UnsatisfiableReadError)
    assert (max_bytes, start) == (100, b"GET /")


async def test_an_oversized_head_is_answered_431_before_the_close(
    stream_pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    # The same, through limits.answer_oversized_head with Tornado's MAX_HEAD_BYTES limit.
    stream, peer = stream_pair
    answer_oversized_head(stream)
    peer.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES)
    with pytest.raises(tornado.iostream.StreamClosedError):
        await asyncio.wait_for(
            stream.read_until_regex(_HEAD_END, max_bytes=MAX_HEAD_BYTES), HANG_BOUND
        )
    peer.settimeout(HANG_BOUND)
    assert peer.recv(100).startswith(b"HTTP/1.1 431 ")


def test_iostream_set_nodelay_can_be_replaced_per_stream() -> None:
    # app._FrontServer.handle_stream replaces it on the instance (TCP_NODELAY stays on).
    assert inspect.isfunction(tornado.iostream.BaseIOStream.set_nodelay)
    assert "set_nodelay" not in getattr(tornado.iostream.IOStream, "__slots__", ())


# -- HTTP1Connection and HTTP1ServerConnection ------------------------------------------


def test_http1_connection_reads_heads_as_the_front_does() -> None:
    # fast_conn finds a head with Tornado's own end-of-head pattern and limit, so a head
    # it cannot take is read by Tornado exactly as before.
    assert _HEAD_END == rb"\r?\n\r?\n"
    source = inspect.getsource(tornado.http1connection.HTTP1Connection)
    assert re.search(
        r'read_until_regex\(\s*b"\\r\?\\n\\r\?\\n",\s*max_bytes=self\.params\.max_header_size',
        source,
    ), "HTTP1Connection no longer reads a head with b'\\r?\\n\\r?\\n' and max_header_size"


def test_http1_connection_keeps_http11_alive_unless_told_to_close() -> None:
    # webhook_post._WebhookPost mirrors HTTP1Connection._can_keep_alive to decide when the
    # 200 may take the short way (the connection stays open after it).
    can_keep_alive = tornado.http1connection.HTTP1Connection._can_keep_alive
    conn = object.__new__(tornado.http1connection.HTTP1Connection)
    conn.params = tornado.http1connection.HTTP1ConnectionParameters()

    def keeps(version: str, connection: str | None) -> bool:
        headers = tornado.httputil.HTTPHeaders({"Content-Length": "2"})
        if connection is not None:
            headers["Connection"] = connection
        line = tornado.httputil.RequestStartLine("POST", "/webhook", version)
        return can_keep_alive(conn, line, headers)

    assert keeps("HTTP/1.1", None)
    assert keeps("HTTP/1.1", "keep-alive")
    assert not keeps("HTTP/1.1", "close")
    assert not keeps("HTTP/1.1", "Close")
    assert not keeps("HTTP/1.0", None)  # never the short way: its version is not 1.1


async def test_http1_connection_attributes_the_delegate_reads(
    stream_pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    # webhook_post._WebhookPost on Tornado's connection: .stream (the short 200),
    # .context.remote_ip (the access log), set_max_body_size (a 413 before the body).
    stream, _peer = stream_pair
    params = tornado.http1connection.HTTP1ConnectionParameters(max_header_size=MAX_HEAD_BYTES)
    assert (params.max_header_size, params.header_timeout) == (MAX_HEAD_BYTES, None)
    context = tornado.httpserver._HTTPRequestContext(stream, ("127.0.0.1", 5), "http", None)
    assert context.remote_ip == "127.0.0.1"
    conn = tornado.http1connection.HTTP1Connection(stream, False, params, context)
    assert conn.stream is stream
    assert conn.context is context
    conn.set_max_body_size(10)
    assert conn._max_body_size == 10


async def test_http1_server_connection_reports_to_its_delegate(
    stream_pair: tuple[tornado.iostream.IOStream, socket.socket],
) -> None:
    # fast_conn hands a connection to HTTP1ServerConnection(stream, params, context) and
    # start_serving(delegate); it calls start_request(itself, request connection) per
    # request and on_close(itself) at the end; close() ends it and waits.
    stream, peer = stream_pair
    calls: list[str] = []

    class Delegate(tornado.httputil.HTTPServerConnectionDelegate):
        def start_request(
            self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
        ) -> tornado.httputil.HTTPMessageDelegate:
            assert server_conn is served
            assert isinstance(request_conn, tornado.http1connection.HTTP1Connection)
            calls.append("start_request")
            return tornado.httputil.HTTPMessageDelegate()

        def on_close(self, server_conn: object) -> None:
            assert server_conn is served
            calls.append("on_close")

    params = tornado.http1connection.HTTP1ConnectionParameters()
    served = tornado.http1connection.HTTP1ServerConnection(stream, params, None)
    served.start_serving(Delegate())
    peer.sendall(b"GET / HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(served.close(), HANG_BOUND)
    assert calls[0] == "start_request"
    assert calls[-1] == "on_close"


# -- HTTPServer and TCPServer ------------------------------------------------------------


def test_http_server_internals_the_front_server_uses() -> None:
    # app._FrontServer: add_sockets fills _sockets and _handlers (TCPServer.stop calls
    # _handlers.pop(fd)()), its Acceptor calls _handle_connection(sock, address) and counts
    # _connections; handle_stream builds an _HTTPRequestContext from protocol and
    # trusted_downstream and the connection from conn_params (header_timeout set to None).
    server = tornado.httpserver.HTTPServer(lambda request: None)
    assert type(server._connections) is set
    assert server._sockets == {}
    assert server._handlers == {}
    assert isinstance(server.conn_params, tornado.http1connection.HTTP1ConnectionParameters)
    assert hasattr(server.conn_params, "header_timeout")
    assert (server.protocol, server.trusted_downstream) == (None, None)
    params = list(inspect.signature(server._handle_connection).parameters)
    assert params == ["connection", "address"]
    assert "self._handlers.pop(fd)()" in inspect.getsource(tornado.tcpserver.TCPServer.stop)
    context_params = list(inspect.signature(tornado.httpserver._HTTPRequestContext).parameters)
    assert context_params == ["stream", "address", "protocol", "trusted_downstream"]


def test_http_server_handle_stream_is_what_the_front_server_replaces() -> None:
    # _FrontServer.handle_stream is Tornado's with FastServerConnection in place of
    # HTTP1ServerConnection; should Tornado's do more, ours must too.
    source = inspect.getsource(tornado.httpserver.HTTPServer.handle_stream)
    body = [line.strip() for line in source.splitlines()[1:] if line.strip()]
    assert body == [
        "context = _HTTPRequestContext(",
        "stream, address, self.protocol, self.trusted_downstream",
        ")",
        "conn = HTTP1ServerConnection(stream, self.conn_params, context)",
        "self._connections.add(conn)",
        "conn.start_serving(self)",
    ]


async def test_http_server_on_close_and_close_all_connections_use_connections() -> None:
    # FastServerConnection sits in _connections: on_close removes it, and
    # close_all_connections awaits its close() until the set is empty.
    server = tornado.httpserver.HTTPServer(lambda request: None)

    class Conn:
        async def close(self) -> None:
            server.on_close(self)

    server._connections.add(Conn())  # type: ignore[arg-type]
    await asyncio.wait_for(server.close_all_connections(), HANG_BOUND)
    assert server._connections == set()
