"""The public listener's limits: a connection cap, accepting that survives EMFILE, time
limits per request phase, and 414/431 answers for oversized request heads.

Why each exists (all found by abusing `wahook serve` with a 1,024 descriptor limit):
Tornado's accept loop lets ``accept()``'s EMFILE escape into the event loop, which logs a
traceback and calls it again at once, since the listening socket stays readable:
416,082 tracebacks in 30 s, a core spinning, POSTs on open connections timing out.
``Acceptor`` owns the accept loop instead: it stops accepting at the connection cap (after
closing the longest idle connection, if any, so an idle flood cannot lock Meta out) and,
at EMFILE/ENFILE, backs off for a moment, writes one rate-limited line, and keeps serving
the connections it has. Connections past the cap wait in the kernel's backlog.

Tornado answers nothing when a request head passes its ``max_header_size``: it closes the
connection. ``answer_oversized_head`` turns that into 414 (the request line is the
problem) or 431 (the header fields are).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tornado.ioloop
import tornado.iostream

from wahook.http import responses
from wahook.ratelog import RateLimitedLog

log = logging.getLogger("wahook.http")

# Descriptors kept back from the cap for the log, gRPC, TLS files and Graph API calls.
FD_RESERVE = 128
DEFAULT_MAX_CONNECTIONS = 1000
# Longest request line (method, target, version) answered normally; longer gets 414.
MAX_REQUEST_LINE = 8192
# Tornado's own bound on a request head (request line and headers): past it, 431/414.
MAX_HEAD_BYTES = 65536
# At EMFILE, accepting pauses this long, doubling up to the maximum while it persists.
EMFILE_BACKOFF = 0.05
EMFILE_BACKOFF_MAX = 1.0
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class FrontLimits:
    """The front's limits (see the WAHOOK_HTTP_* options). ``max_connections`` 0: auto."""

    max_connections: int = 0
    idle_timeout: float = 75.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0

    def connection_cap(self) -> int:
        return self.max_connections or connection_cap_for(
            resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        )


def connection_cap_for(fd_limit: int) -> int:
    """The automatic cap: 1,000, or the descriptor limit less a reserve when lower."""
    if fd_limit == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, fd_limit - FD_RESERVE))


class Acceptor:
    """Accepts on one listening socket while fewer than ``cap`` connections are open.

    ``open_count()`` is the number of open connections; ``evict_idle()`` closes the
    connection idle longest and returns True, or returns False when none is idle. The
    owner calls ``connection_closed()`` whenever a connection closes.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_connection: Callable[[socket.socket, Any], None],
        *,
        cap: int,
        open_count: Callable[[], int],
        evict_idle: Callable[[], bool],
    ) -> None:
        self._sock = sock
        self._on_connection = on_connection
        self._cap = cap
        self._open_count = open_count
        self._evict_idle = evict_idle
        self._loop = tornado.ioloop.IOLoop.current()
        self._listening = False
        self._stopped = False
        self._backoff = EMFILE_BACKOFF
        self._retry: object | None = None
        self._emfile_log = RateLimitedLog(log, logging.WARNING)
        self._cap_log = RateLimitedLog(log, logging.WARNING)

    def start(self) -> None:
        self._listen(True)

    def stop(self) -> None:
        """Stop for good (the server stops listening)."""
        self._stopped = True
        self._listen(False)
        if self._retry is not None:
            self._loop.remove_timeout(self._retry)
            self._retry = None

    def connection_closed(self) -> None:
        if not self._listening and self._retry is None and self._open_count() < self._cap:
            self._listen(True)

    def _listen(self, on: bool) -> None:
        if on and not self._listening and not self._stopped:
            self._loop.add_handler(self._sock, self._ready, tornado.ioloop.IOLoop.READ)
            self._listening = True
        elif not on and self._listening:
            self._loop.remove_handler(self._sock)
            self._listening = False

    def _resume(self) -> None:
        self._retry = None
        if self._open_count() < self._cap:
            self._listen(True)

    def _resume_at_cap(self) -> None:
        """Listen again after a turn at the cap: what the backlog holds makes the socket
        readable, and ``_ready`` evicts for it then."""
        self._retry = None
        self._listen(True)

    def _ready(self, fd: object, events: int) -> None:
        # As many as the backlog holds, at most 128 a turn so requests on open
        # connections are not starved (Tornado's loop does the same).
        accepted = 0
        for _ in range(128):
            if self._open_count() >= self._cap:
                if accepted:
                    # The connections accepted in this turn count as waiting for a request
                    # only once their loop has run: choosing one to evict now would find
                    # only the keep-alive connections in use. Look again next turn.
                    self._listen(False)
                    self._retry = self._loop.call_later(0, self._resume_at_cap)
                    return
                # Paused until a connection closes: the one evicted here, else any. (Not
                # accepting at once: a new connection is idle until its loop has run, so
                # a burst would evict the keep-alive connections in use.)
                if not self._evict_idle():
                    self._cap_log.log(
                        "connection cap reached (%d open): not accepting until one closes "
                        "(WAHOOK_HTTP_MAX_CONNECTIONS)",
                        self._cap,
                    )
                self._listen(False)
                return
            try:
                conn, address = self._sock.accept()
            except BlockingIOError:
                self._backoff = EMFILE_BACKOFF
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_DESCRIPTORS:
                    raise
                self._emfile_log.log(
                    "cannot accept a connection: %s (%d open); pausing accepts, serving the "
                    "open connections (raise the descriptor limit or lower "
                    "WAHOOK_HTTP_MAX_CONNECTIONS)",
                    exc.strerror,
                    self._open_count(),
                )
                self._listen(False)
                self._retry = self._loop.call_later(self._backoff, self._resume)
                self._backoff = min(self._backoff * 2, EMFILE_BACKOFF_MAX)
                return
            self._on_connection(conn, address)
            accepted += 1


def answer_oversized_head(stream: tornado.iostream.IOStream) -> None:
    """Make ``stream`` answer 414/431 when Tornado closes it for an oversized request head
    (``max_bytes`` of the header read exceeded), instead of closing silently."""
    close = stream.close

    def close_answering(exc_info: Any = False) -> None:
        if (
            isinstance(exc_info, tornado.iostream.UnsatisfiableReadError)
            and stream._read_max_bytes == MAX_HEAD_BYTES
        ):
            line_end = stream._read_buffer.find(b"\n", 0, MAX_REQUEST_LINE + 2)
            # One small write straight to the socket: the connection closes next.
            with contextlib.suppress(OSError, ValueError):
                stream.socket.send(responses.oversized_head_bytes(line_too_long=line_end < 0))
        close(exc_info)

    stream.close = close_answering  # type: ignore[method-assign]
