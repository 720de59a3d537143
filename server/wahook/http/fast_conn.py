"""The front's HTTP/1.1 server connection: plain ``POST /webhook`` requests read without
Tornado's per-request machinery, anything else handed to Tornado's own connection.

Tornado's ``HTTP1ServerConnection`` makes an ``HTTP1Connection`` per request and reads it
in a coroutine: a timeout wrapper, close callbacks set and cleared, the start line and
every header parsed with several regular expressions each into an ``HTTPHeaders``, the
body read in a second coroutine, and a loop turn between requests: more of a POST's CPU
than the normaliser (figures: docs/decisions/0024-front-connection.md).

``FastServerConnection`` takes what the stream holds in one read (on a plain TCP stream with
nothing buffered, once the socket is readable: right after an answer the client has sent
nothing yet, and trying the socket then costs a read that fails with EAGAIN; such a
stream reads with ``recv``, not into a zeroed 64 KiB buffer: ``read_with_recv``) and finds
the head in it with Tornado's own pattern (a head that came in pieces is read with Tornado's
``read_until_regex`` and ``max_bytes``, so the 414/431 answers of http.limits still apply).
When the head is a plain ``POST /webhook`` over HTTP/1.1 with a ``Content-Length``, no
``Transfer-Encoding``, ``Expect`` or ``Upgrade`` and field lines well-formed by RFC 9110's
grammar (one regular expression over the block), it reads the three headers the delegate
uses, takes the body from the same bytes (or reads the rest) and drives the same
``_WebhookPost`` delegate (http.webhook_post) that Tornado's connection drove: the same
answers, limits, timeouts, access log and metrics. Any other head (another method or path,
HTTP/1.0, chunked, an odd or malformed header) is put back into the stream's buffer unread
and the connection is handed, for the rest of its life, to Tornado's
``HTTP1ServerConnection``, which then serves or refuses it exactly as before. Bytes of a
pipelined next request are put back too before it is awaited, so the front's sweeps see a
request under way where they always looked. TLS, accepting, the connection cap and the
timeouts stay Tornado's and http.limits'.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

import tornado.http1connection
import tornado.httputil
import tornado.ioloop
import tornado.iostream

from wahook.http import responses
from wahook.http.limits import MAX_REQUEST_LINE

log = logging.getLogger("wahook.http")

# The same end-of-head pattern as Tornado's HTTP1Connection (a bare LF is tolerated).
_HEAD_END = rb"\r?\n\r?\n"
_HEAD_END_RE = re.compile(_HEAD_END)
# Most a request's first read takes from the stream (Meta's POSTs are a few KiB).
_READ_SIZE = 65536
# The fast path's request target: the webhook path, with a query of visible ASCII.
_TARGET = re.compile(rb"/webhook(?:\?[!-~]*)?")
# The header block by RFC 9110: lines of a token, a colon and a value of visible
# characters, spaces, tabs and obs-text, then the blank line. Anything else (folding, a
# space before the colon, a control character) is Tornado's to judge.
_FIELDS = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r?\n)*\r?\n")
# The headers the webhook delegate reads (http.webhook_post), as they start a line of the
# lower-cased head; and those that send a request to Tornado's connection.
_KEPT = (
    (b"\ncontent-length:", "Content-Length"),
    (b"\nconnection:", "Connection"),
    (b"\nx-hub-signature-256:", "X-Hub-Signature-256"),
)
_TORNADOS = (b"\ntransfer-encoding:", b"\nexpect:", b"\nupgrade:")
_START_LINE_CACHE: dict[str, tornado.httputil.RequestStartLine] = {}


def parse_webhook_head(data: bytes) -> tuple[str, tornado.httputil.HTTPHeaders] | None:
    """The request target and the headers the webhook delegate reads, when ``data`` (a
    request head, up to and including its blank line) is a plain ``POST /webhook`` over
    HTTP/1.1 with a Content-Length; None when Tornado's connection should read it."""
    head = data.lstrip(b"\r\n")
    line_end = head.find(b"\n")
    method, _, rest = head[:line_end].rstrip(b"\r").partition(b" ")
    target, _, version = rest.partition(b" ")
    if (
        method != b"POST"
        or version != b"HTTP/1.1"
        or len(target) > MAX_REQUEST_LINE
        or not _TARGET.fullmatch(target)
        or not _FIELDS.fullmatch(head, line_end + 1)
    ):
        return None
    lower = head.lower()
    for name in _TORNADOS:
        if name in lower:
            return None
    headers = tornado.httputil.HTTPHeaders()
    for name, canonical in _KEPT:
        at = lower.find(name, line_end)
        if at < 0:
            continue
        if lower.find(name, at + 1) >= 0:
            return None  # repeated: Tornado joins or refuses them
        start = at + len(name)
        value = head[start : head.index(b"\n", start)]
        headers[canonical] = value.strip(b" \t\r").decode("latin1")
    if "Content-Length" not in headers:
        return None
    return target.decode("latin1"), headers


def write_now(stream: tornado.iostream.IOStream, data: bytes) -> None:
    """``stream.write(data)``, but on a plain TCP stream with nothing queued, straight to
    the socket: IOStream's write makes a future and its callback per write, for the one
    small answer the kernel takes at once. What the socket does not take (a full send
    buffer, an error) goes through ``stream.write`` as before, and so does a write to a
    closed stream (which has no socket left), refused with StreamClosedError."""
    if (
        type(stream) is tornado.iostream.IOStream
        and not stream.closed()
        and not stream._write_buffer
    ):
        try:
            sent = stream.socket.send(data)
        except OSError:  # would block, or the connection broke: stream.write decides
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    stream.write(data)


def read_when_readable(stream: tornado.iostream.IOStream, max_bytes: int) -> asyncio.Future[bytes]:
    """``stream.read_bytes(max_bytes, partial=True)``, but on a plain TCP stream with
    nothing buffered, without its first read: the read waits until the socket is readable.
    Called right after an answer, before the client can have sent its next request,
    IOStream's read would try the socket at once, allocating and zeroing a
    ``read_chunk_size`` buffer (64 KiB) for a ``recv_into`` that fails with EAGAIN, then
    wait, then read again. A TLS stream reads at once as before: decrypted bytes can wait
    in the SSL object where the socket does not show them readable."""
    if (
        type(stream) is tornado.iostream.IOStream
        and not stream.closed()
        and not stream._read_buffer_size
    ):
        # What read_bytes does, less the inline try: the pending read is served by
        # IOStream's own handler (_handle_read) when the socket turns readable, and failed
        # with StreamClosedError should the stream close first.
        future = stream._start_read()
        stream._read_bytes = max_bytes
        stream._read_partial = True
        stream._add_io_state(tornado.ioloop.IOLoop.READ)
        return cast("asyncio.Future[bytes]", future)
    return cast("asyncio.Future[bytes]", stream.read_bytes(max_bytes, partial=True))


def read_with_recv(stream: tornado.iostream.IOStream) -> None:
    """Make a plain TCP stream read its socket with ``recv``: IOStream's own read
    (``_read_to_buffer``) allocates and zeroes a ``read_chunk_size`` bytearray (64 KiB) per
    read for a ``recv_into`` of a few hundred bytes, where ``recv`` returns bytes sized to
    what arrived. The bytes go where Tornado's would (``_read_buffer`` and its size, which
    the front's sweeps read) and end of stream and errors close the stream as Tornado's
    read does; a read into a caller's buffer (``read_into``) and TLS streams keep Tornado's
    own read."""
    if type(stream) is not tornado.iostream.IOStream:
        return
    own = stream._read_to_buffer

    def read_to_buffer() -> int | None:
        if stream._user_read_buffer:
            return own()
        try:
            data = stream.socket.recv(stream.read_chunk_size)
        except BlockingIOError:
            return 0
        except OSError as exc:
            stream.close(exc_info=exc)
            if stream._is_connreset(exc):
                return None
            raise
        if not data:
            stream.close()
            return 0
        stream._read_buffer += data
        stream._read_buffer_size += len(data)
        if stream._read_buffer_size > stream.max_buffer_size:
            full = tornado.iostream.StreamBufferFullError("Reached maximum read buffer size")
            stream.close(exc_info=full)
            raise full
        return len(data)

    stream._read_to_buffer = read_to_buffer  # type: ignore[method-assign]


def put_back(stream: tornado.iostream.IOStream, data: bytes) -> None:
    """Put ``data`` back in front of the stream's unread bytes (IOStream's own buffer: the
    next read, Tornado's or ours, starts with it)."""
    if data:
        stream._read_buffer[:0] = data
        stream._read_buffer_size += len(data)


class _FastRequest(tornado.httputil.HTTPConnection):
    """What the webhook delegate writes its answer to: the response bytes go straight to
    the stream; ``finish`` starts reading the connection's next request, or closes it
    once the answer is out when the answer said ``Connection: close``."""

    __slots__ = ("_owner", "close_after", "context", "finished", "stream")

    def __init__(self, owner: FastServerConnection) -> None:
        self._owner = owner
        self.stream = owner.stream
        self.context = owner.context
        self.finished = False
        self.close_after = False

    def set_max_body_size(self, max_body_size: int) -> None:
        """Tornado's per-request limit: here the delegate's own checks are the limit."""

    def write_headers(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> asyncio.Future[None]:
        assert isinstance(start_line, tornado.httputil.ResponseStartLine)
        if headers.get("Connection", "").lower() == "close":
            self.close_after = True
        elif self.close_after:  # the request asked for it, as Tornado's connection says
            headers["Connection"] = "close"
        return self.stream.write(responses.head_bytes(start_line, headers) + (chunk or b""))

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        return self.stream.write(chunk)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._owner.request_done(self)


class FastServerConnection:
    """Serves one accepted connection for ``HTTPServer`` (in place of Tornado's
    ``HTTP1ServerConnection``): see the module docstring. ``delegate`` gets
    ``start_request(self, request)`` per request and ``on_close(self)`` once."""

    def __init__(
        self,
        stream: tornado.iostream.IOStream,
        params: tornado.http1connection.HTTP1ConnectionParameters,
        context: Any,
    ) -> None:
        self.stream = stream
        self.params = params
        self.context = context
        self._delegate: tornado.httputil.HTTPServerConnectionDelegate | None = None
        self._request: _FastRequest | None = None
        self._message: tornado.httputil.HTTPMessageDelegate | None = None
        self._tornado: tornado.http1connection.HTTP1ServerConnection | None = None
        # Bytes read past the current request (a pipelined next one), unread again
        # before the next request is awaited.
        self._rest = b""
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start_serving(self, delegate: tornado.httputil.HTTPServerConnectionDelegate) -> None:
        self._delegate = delegate
        self.stream.set_close_callback(self._on_stream_close)
        # From the next loop turn, as Tornado's connection starts its coroutine: the
        # acceptor (http.limits) accepts what the backlog holds before this connection
        # counts as waiting for a request, so one just accepted is never evicted as idle.
        asyncio.get_running_loop().call_soon(self._next_request)

    async def close(self) -> None:
        """Close the connection and wait until its delegate was told (``on_close``)."""
        if self._tornado is not None:
            await self._tornado.close()
            return
        self.stream.close()
        await self._closed

    # -- reading -------------------------------------------------------------------------

    def _next_request(self) -> None:
        assert self._delegate is not None
        stream = self.stream
        if stream.closed():
            self._on_stream_close()
            return
        request = self._request = _FastRequest(self)
        self._message = self._delegate.start_request(self, request)
        # Bytes of the next request that came with the last one wait in the stream's
        # buffer, where the front's sweeps look for a request under way.
        put_back(self.stream, self._rest)
        self._rest = b""
        try:
            # Whatever is buffered, or the next bytes to arrive: usually a whole request.
            data = read_when_readable(stream, _READ_SIZE)
        except tornado.iostream.StreamClosedError:
            self._on_stream_close()
            return
        data.add_done_callback(self._on_data)

    def _on_data(self, future: asyncio.Future[bytes]) -> None:
        if future.exception() is not None:
            return  # the stream closed (the close callback ends the connection)
        data = future.result()
        end = _HEAD_END_RE.search(data)
        if end is None or end.end() > self.params.max_header_size:
            # A head in several pieces: back in the buffer, read as Tornado reads one
            # (the same pattern and limit: past it http.limits answers 414/431).
            put_back(self.stream, data)
            try:
                head = cast(
                    "asyncio.Future[bytes]",
                    self.stream.read_until_regex(_HEAD_END, max_bytes=self.params.max_header_size),
                )
            except tornado.iostream.StreamClosedError:
                return
            head.add_done_callback(self._on_head)
            return
        self._guarded(self._serve, data[: end.end()], data[end.end() :])

    def _on_head(self, future: asyncio.Future[bytes]) -> None:
        if future.exception() is None:
            self._guarded(self._serve, future.result(), b"")

    def _guarded(self, serve: Callable[[bytes, bytes], None], head: bytes, rest: bytes) -> None:
        try:
            serve(head, rest)
        except Exception:
            # As Tornado's connection does with an uncaught error: log it, close.
            log.exception("POST /webhook: uncaught error reading the request")
            self.stream.close()

    def _serve(self, head: bytes, rest: bytes) -> None:
        """``head`` is a request head, ``rest`` what was read after it."""
        parsed = parse_webhook_head(head)
        if parsed is None:
            self._hand_to_tornado(head + rest)
            return
        target, headers = parsed
        start_line = _START_LINE_CACHE.get(target)
        if start_line is None:
            start_line = tornado.httputil.RequestStartLine("POST", target, "HTTP/1.1")
            if len(_START_LINE_CACHE) < 64:
                _START_LINE_CACHE[target] = start_line
        message, request = self._message, self._request
        assert message is not None
        assert request is not None
        # Tornado's rule: an HTTP/1.1 connection stays open unless the client said close.
        request.close_after = headers.get("Connection", "").lower() == "close"
        self._done_or_wait(message.headers_received(start_line, headers))
        if request.finished:
            return  # answered before the body (413, 503): the connection closes
        length = int(headers["Content-Length"])
        if len(rest) >= length:
            self._rest = rest[length:]
            self._on_body(request, rest[:length])
            return
        # The body's remainder is read as Tornado reads one, the part read back in front.
        put_back(self.stream, rest)
        try:
            body = cast("asyncio.Future[bytes]", self.stream.read_bytes(length))
        except tornado.iostream.StreamClosedError:
            return
        body.add_done_callback(lambda f: self._on_body_future(request, f))

    def _on_body_future(self, request: _FastRequest, future: asyncio.Future[bytes]) -> None:
        if future.exception() is not None:
            return  # the stream closed mid-body: the close callback tells the delegate
        try:
            self._on_body(request, future.result())
        except Exception:
            log.exception("POST /webhook: uncaught error reading the request")
            self.stream.close()

    def _on_body(self, request: _FastRequest, body: bytes) -> None:
        message = self._message
        if request is not self._request or message is None:
            return
        if body:
            self._done_or_wait(message.data_received(body))
        message.finish()

    @staticmethod
    def _done_or_wait(result: Awaitable[None] | None) -> None:
        # The webhook delegate never waits (it returns None); keep that promise visible.
        assert result is None, "the webhook delegate does not pause reads"

    def request_done(self, request: _FastRequest) -> None:
        """The request's answer is written: read the next request, or close."""
        if request is not self._request:
            return
        self._message = None
        if request.close_after:
            # Once the answer is out, as Tornado's connection closes after its write.
            try:
                written = self.stream.write(b"")
            except tornado.iostream.StreamClosedError:
                return
            written.add_done_callback(lambda _: self.stream.close())
            return
        self._next_request()

    # -- handing over and closing --------------------------------------------------------

    def _hand_to_tornado(self, data: bytes) -> None:
        """Put ``data`` (the request's bytes read so far) back in front of the stream's
        unread bytes and let Tornado's own connection serve this connection from this
        request on."""
        stream = self.stream
        put_back(stream, data)
        stream.set_close_callback(None)
        self._request = self._message = None
        server = self._delegate
        assert server is not None
        # The request delegate made for this request was never used: its wait ends as
        # Tornado's connection makes another for the same request.
        conn = tornado.http1connection.HTTP1ServerConnection(stream, self.params, self.context)
        self._tornado = conn
        conn.start_serving(_AsOwner(self, server))

    def _on_stream_close(self) -> None:
        message, self._message = self._message, None
        request = self._request
        if message is not None and request is not None and not request.finished:
            message.on_connection_close()
        self._ended()

    def _ended(self) -> None:
        if self._closed.done():
            return
        self._closed.set_result(None)
        assert self._delegate is not None
        self._delegate.on_close(self)


class _AsOwner(tornado.httputil.HTTPServerConnectionDelegate):
    """Tornado's connection, serving for a FastServerConnection: requests and the close
    are reported to the server under the FastServerConnection's name, the one it holds."""

    def __init__(
        self, owner: FastServerConnection, server: tornado.httputil.HTTPServerConnectionDelegate
    ) -> None:
        self._owner = owner
        self._server = server

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        return self._server.start_request(self._owner, request_conn)

    def on_close(self, server_conn: object) -> None:
        self._owner._ended()
