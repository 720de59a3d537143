"""The hand-off between a ``--workers`` front process and the parent: frames on a Unix socket.

A front (child) verifies and normalises a POST on its own core and prepares the rows
(``store.sqlite.events.prepare``: the serialised event and its filter columns); it hands
them to the parent, whose one SQLite writer commits them with every other front's rows in
the same group commit, and answers each append with its ``AppendResult`` after the
commit's fsync. Only then does the front answer 200. Dedupe happens in the writer, so
two fronts receiving the same retry store it once.

The socket is a ``socketpair`` the parent made for this child alone, so both ends are
wahook's own code: a frame is a 4-byte length, a 1-byte kind and a ``marshal`` payload of
plain tuples (str, int, float, bytes, None). No request body crosses as such: only rows
the front built from a verified body, and answers.

Each side sends every frame of one loop iteration in one write, as the writer hands over
its jobs (``store.sqlite.writer``): a burst of POSTs costs one system call each way.

Frames, child to parent: ``HELLO`` (pid, once listening), ``APPEND`` (request id, rows),
``READY`` (request id: /readyz), ``METRICS`` (request id: the parent's collectors).
Parent to child: ``CONFIG`` (once, first: the serve flags and the worker's index) and
``RESULT`` (request id, ok, value or (error class, message)).
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, cast

from wahook.errors import InvalidArgumentError, LogUnavailableError, WahookError
from wahook.store.base import AppendResult
from wahook.store.head import check_appendable
from wahook.store.sqlite.events import Row, prepare
from wahook.store.sqlite.status import StatusUpdate
from wahook.v1 import event_pb2

log = logging.getLogger("wahook.workers")

HEADER = struct.Struct(">IB")
# A frame holds one POST's rows: the body cap (4 MiB by default) twice over at most; this
# only stops a corrupted length from allocating without bound.
MAX_FRAME = 256 * 1024 * 1024

HELLO, APPEND, READY, METRICS = 1, 2, 3, 4
CONFIG, RESULT = 10, 11

# The errors a RESULT may carry, by class name; anything else becomes LogUnavailableError.
_ERRORS: dict[str, type[WahookError]] = {
    "InvalidArgumentError": InvalidArgumentError,
    "LogUnavailableError": LogUnavailableError,
}

# Several appends' rows in, their results out (SqliteEventLog.append_rows_many).
AppendMany = Callable[[list[list[Row]]], "asyncio.Future[list[Any]]"]

# (name, kind, help, value): one of the parent's /metrics collectors, read.
MetricValue = tuple[str, str, str, float]


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class Channel(asyncio.Protocol):
    """Frames both ways on one stream socket. ``on_frame(kind, payload)`` for each frame
    received; ``on_lost()`` once when the connection ends (the peer exited or closed)."""

    def __init__(self, on_frame: Callable[[int, bytes], None], on_lost: Callable[[], None]) -> None:
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._frames()
        except Exception:
            log.exception("hand-off: bad frame; closing the channel")
            self.close()

    def _frames(self) -> None:
        """Hand on every whole frame in the buffer and keep the rest."""
        buf = self._buffer
        pos = 0
        size = len(buf)
        while size - pos >= HEADER.size:
            length, kind = HEADER.unpack_from(buf, pos)
            if length > MAX_FRAME:
                raise FrameError(f"frame of {length} bytes")
            end = pos + HEADER.size + length
            if size < end:
                break
            payload = bytes(buf[pos + HEADER.size : end])
            pos = end
            self._on_frame(kind, payload)
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_lost()

    def send(self, kind: int, payload: bytes) -> None:
        """Queue a frame; every frame queued in this loop iteration goes in one write."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(HEADER.pack(len(payload), kind))
        self._out.append(payload)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_channel(
    sock: socket.socket, on_frame: Callable[[int, bytes], None], on_lost: Callable[[], None]
) -> Channel:
    """A Channel on a connected Unix stream socket (one end of a socketpair)."""
    loop = asyncio.get_running_loop()
    _, channel = await loop.create_unix_connection(lambda: Channel(on_frame, on_lost), sock=sock)
    return channel


def _status_tuple(status: StatusUpdate | None) -> tuple[Any, ...] | None:
    if status is None:
        return None
    return (status.message_id, status.state, status.occurred_at, status.recipient_id, status.errors)


def encode_rows(request: int, rows: Sequence[Row]) -> bytes:
    return marshal.dumps(
        (
            request,
            [(r.event_id, r.dedupe_key, r.params, _status_tuple(r.status)) for r in rows],
        )
    )


def decode_rows(payload: bytes) -> tuple[int, list[Row]]:
    request, raw = marshal.loads(payload)  # noqa: S302 - our own child's frame, see above
    rows = [
        Row(event_id, dedupe_key, params, None if status is None else StatusUpdate(*status))
        for event_id, dedupe_key, params, status in raw
    ]
    return request, rows


def result_frame(request: int, value: Any) -> bytes:
    return marshal.dumps((request, True, value))


def error_frame(request: int, exc: BaseException) -> bytes:
    name = type(exc).__name__
    message = exc.message if isinstance(exc, WahookError) else "the event log cannot take the write"
    return marshal.dumps(
        (request, False, (name if name in _ERRORS else "LogUnavailableError", message))
    )


class RemoteAppender:
    """The front's side: a ``store.base.Appender`` whose appends the parent's writer commits.

    ``append`` checks and prepares the events here (this process's core), sends the rows
    and returns a future the parent's RESULT resolves, after its commit is durable. When
    the parent goes away every append waiting fails with LogUnavailableError (the front
    answers 503, Meta retries) and ``lost`` is set.
    """

    def __init__(self) -> None:
        self._pending: dict[int, tuple[asyncio.Future[Any], int]] = {}
        self._next = 0
        self._channel: Channel | None = None
        self._closed = False
        self.lost = asyncio.Event()
        self.on_config: Callable[[bytes], None] | None = None

    async def connect(self, sock: socket.socket) -> None:
        self._channel = await open_channel(sock, self._on_frame, self._on_lost)

    # -- Appender ------------------------------------------------------------------------

    def append(self, events: Sequence[event_pb2.Event]) -> asyncio.Future[AppendResult]:
        check_appendable(events)
        rows = [prepare(event) for event in events]
        request, future = self._request(APPEND)
        assert self._channel is not None
        self._channel.send(APPEND, encode_rows(request, rows))
        return future

    def hello(self) -> None:
        """Tell the parent this front listens."""
        assert self._channel is not None
        self._channel.send(HELLO, marshal.dumps(os.getpid()))

    async def check_writable(self) -> None:
        """The parent's own /readyz check: its writer commits and its disk takes writes."""
        await self._ask(READY)

    async def parent_metrics(self) -> list[MetricValue]:
        """The parent's /metrics collectors (store, gRPC delivery), read now."""
        values: list[MetricValue] = await self._ask(METRICS)
        return values

    async def close(self) -> None:
        self._closed = True
        if self._channel is not None:
            self._channel.close()

    # -- plumbing ------------------------------------------------------------------------

    def _request(self, kind: int) -> tuple[int, asyncio.Future[Any]]:
        if self._closed or self._channel is None:
            raise LogUnavailableError("the event log's writer process is gone")
        self._next += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = (future, kind)
        return self._next, future

    async def _ask(self, kind: int) -> Any:
        request, future = self._request(kind)
        assert self._channel is not None
        self._channel.send(kind, marshal.dumps(request))
        return await future

    def _on_frame(self, kind: int, payload: bytes) -> None:
        if kind == CONFIG:
            if self.on_config is not None:
                self.on_config(payload)
            return
        if kind != RESULT:
            raise FrameError(f"unexpected frame kind {kind}")
        request, ok, value = marshal.loads(payload)  # noqa: S302 - the parent's own frame
        future, asked = self._pending.pop(request, (None, 0))
        if future is None or future.done():
            return
        if not ok:
            name, message = value
            future.set_exception(_ERRORS.get(name, LogUnavailableError)(message))
        elif asked == APPEND:
            sequences, new_count = value
            future.set_result(AppendResult(sequences=list(sequences), new_count=new_count))
        else:
            future.set_result(value)

    def _on_lost(self) -> None:
        self._closed = True
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(
                    LogUnavailableError("the event log's writer process is gone; retry")
                )
        self.lost.set()


class FrontLink:
    """The parent's side of one front's channel: appends to ``log``, answers READY with
    ``ready()`` and METRICS with ``metrics()``; ``on_hello(pid)`` when the front listens,
    ``on_lost()`` when the channel ends."""

    def __init__(
        self,
        append_many: AppendMany | None,
        ready: Callable[[], Awaitable[None]],
        metrics: Callable[[], list[MetricValue]],
        *,
        on_hello: Callable[[int], None] = lambda pid: None,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._append_many = append_many
        # APPEND frames read in this loop iteration: one writer job for them all.
        self._appends: list[tuple[int, list[Row]]] = []
        self._ready = ready
        self._metrics = metrics
        self._on_hello = on_hello
        self._lost_callback = on_lost
        self._tasks: set[asyncio.Task[None]] = set()
        self.channel: Channel | None = None

    async def connect(self, sock: socket.socket) -> None:
        self.channel = await open_channel(sock, self._on_frame, self._lost_callback)

    def send_config(self, payload: bytes) -> None:
        assert self.channel is not None
        self.channel.send(CONFIG, payload)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()

    def _on_frame(self, kind: int, payload: bytes) -> None:
        channel = self.channel
        assert channel is not None
        if kind == APPEND:
            if not self._appends:
                asyncio.get_running_loop().call_soon(self._submit)
            self._appends.append(decode_rows(payload))
        elif kind == READY:
            self._spawn(self._answer_ready(marshal.loads(payload)))  # noqa: S302
        elif kind == METRICS:
            request = marshal.loads(payload)  # noqa: S302 - our own child's frame
            channel.send(RESULT, result_frame(request, self._metrics()))
        elif kind == HELLO:
            self._on_hello(marshal.loads(payload))  # noqa: S302 - our own child's frame
        else:
            raise FrameError(f"unexpected frame kind {kind}")

    def _submit(self) -> None:
        """Every APPEND read in this loop iteration, to the writer as one job."""
        appends, self._appends = self._appends, []
        requests = [request for request, _ in appends]
        if self._append_many is None:
            self._answer_all(requests, LogUnavailableError("no shared writer here"))
            return
        try:
            future = self._append_many([rows for _, rows in appends])
        except Exception as exc:  # the log is closed: nothing was queued
            self._answer_all(requests, exc)
            return
        future.add_done_callback(partial(self._answer, requests))

    def _answer(self, requests: list[int], future: asyncio.Future[list[Any]]) -> None:
        if future.cancelled():
            self._answer_all(requests, LogUnavailableError("cancelled"))
            return
        exc = future.exception()
        if exc is not None:
            if not isinstance(exc, WahookError):
                log.error("event log append failed", exc_info=exc)
            self._answer_all(requests, exc)
            return
        channel = self.channel
        assert channel is not None
        for request, result in zip(requests, future.result(), strict=True):
            if isinstance(result, AppendResult):
                frame = result_frame(request, (result.sequences, result.new_count))
            else:
                frame = error_frame(request, result)
            channel.send(RESULT, frame)

    def _answer_all(self, requests: list[int], exc: BaseException) -> None:
        assert self.channel is not None
        for request in requests:
            self.channel.send(RESULT, error_frame(request, exc))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_ready(self, request: int) -> None:
        try:
            await self._ready()
        except Exception as exc:  # sent to the front, which answers /readyz 503 with it
            frame = error_frame(request, exc)
        else:
            frame = result_frame(request, None)
        if self.channel is not None:
            self.channel.send(RESULT, frame)
