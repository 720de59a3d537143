"""A fake WhatsApp Cloud API media endpoint (Tornado on 127.0.0.1, a free port) for tests.

It serves what the Graph API does for media, as far as wahook uses it:

- ``GET /{version}/{media_id}`` with ``Authorization: Bearer <token>``: JSON with ``url``,
  ``mime_type``, ``sha256`` (hex), ``file_size``, ``id``, ``messaging_product``;
- ``GET {url}`` (here ``/download/{media_id}``) with the same header: the bytes, written
  and flushed in 64 KiB pieces (``served`` counts what was flushed, so a test can see a
  paused download).

A wrong or missing token gets Meta's answer for it (OAuthException, code 190); an unknown
id gets Meta's "does not exist" (400, code 100, subcode 33). Each ``FakeMedia`` can
misbehave: a forced status and body for either call, a wrong sha256 or file_size, a
delay per piece, no Content-Length (chunked), a URL of its own (``/redirect?to=URL``
answers a 302 to URL). Ids and bytes are made up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

TOKEN = "EAAGfake-graph-token-7f3c9d"  # made up
VERSION = "v24.0"
PIECE = 64 * 1024


def graph_error_body(message: str, code: int, subcode: int | None = None, kind: str = "") -> bytes:
    err: dict[str, Any] = {
        "message": message,
        "type": kind or "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEfFakeTrace",
    }
    if subcode is not None:
        err["error_subcode"] = subcode
    return json.dumps({"error": err}).encode()


@dataclass
class FakeMedia:
    """One media file and how the fake misbehaves about it."""

    data: bytes
    mime_type: str = "image/jpeg"
    sha256: str | None = None  # None: the right hex digest
    file_size: int | str | None = None  # None: the right size, as a number
    metadata_answer: tuple[int, bytes] | None = None  # forced (status, body) of GET /{id}
    download_answer: tuple[int, bytes] | None = None  # forced (status, body) of the bytes
    piece_delay: float = 0.0  # seconds slept before each 64 KiB piece
    metadata_delay: float = 0.0
    chunked: bool = False  # no Content-Length
    url: str | None = None  # None: this fake's download URL


@dataclass
class FakeGraph:
    """The running fake; ``media`` maps ids to files, ``requests`` records (path, auth)."""

    base_url: str
    token: str = TOKEN
    media: dict[str, FakeMedia] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)
    # Per download: None while writing, True when all was written, False when the
    # client closed the connection first.
    finished: dict[str, bool | None] = field(default_factory=dict)

    def add(self, media_id: str, data: bytes, **how: Any) -> FakeMedia:
        m = FakeMedia(data, **how)
        self.media[media_id] = m
        return m

    async def stalled(self, media_id: str, quiet: float = 0.3, within: float = 60.0) -> int:
        """What download ``media_id`` had served once it stopped growing for ``quiet``
        seconds (its reader stalled, so must the writing); fails if it grew for ``within``
        seconds. Waits on the count, however fast or slow the machine fills the buffers."""
        async with asyncio.timeout(within):
            last = self.served[media_id]
            while True:
                await asyncio.sleep(quiet)
                if (now := self.served[media_id]) == last:
                    return now
                last = now

    def download_requests(self, media_id: str) -> int:
        return sum(1 for path, _ in self.requests if path.startswith(f"/download/{media_id}"))


class _Handler(tornado.web.RequestHandler):
    def initialize(self, graph: FakeGraph) -> None:
        self.graph = graph

    def _authorised(self) -> bool:
        auth = self.request.headers.get("Authorization", "")
        self.graph.requests.append((self.request.uri or "", auth))
        if auth == f"Bearer {self.graph.token}":
            return True
        self._answer(
            401, graph_error_body("Invalid OAuth access token - Cannot parse access token", 190)
        )
        return False

    def _answer(self, status: int, body: bytes) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)


class _MetadataHandler(_Handler):
    async def get(self, media_id: str) -> None:
        if not self._authorised():
            return
        m = self.graph.media.get(media_id)
        if m is None:
            self._answer(
                400,
                graph_error_body(
                    f"Unsupported get request. Object with ID '{media_id}' does not exist",
                    100,
                    33,
                    "GraphMethodException",
                ),
            )
            return
        if m.metadata_delay:
            await asyncio.sleep(m.metadata_delay)
        if m.metadata_answer is not None:
            self._answer(*m.metadata_answer)
            return
        digest = hashlib.sha256(m.data).hexdigest()
        self._answer(
            200,
            json.dumps(
                {
                    "messaging_product": "whatsapp",
                    "url": m.url or f"{self.graph.base_url}/download/{media_id}?ext=1&hash=f4k3",
                    "mime_type": m.mime_type,
                    "sha256": digest if m.sha256 is None else m.sha256,
                    "file_size": m.file_size if m.file_size is not None else len(m.data),
                    "id": media_id,
                }
            ).encode(),
        )


class _DownloadHandler(_Handler):
    async def get(self, media_id: str) -> None:
        if not self._authorised():
            return
        m = self.graph.media.get(media_id)
        if m is None:
            self._answer(404, graph_error_body("Not found", 100))
            return
        if m.download_answer is not None:
            self._answer(*m.download_answer)
            return
        self.set_header("Content-Type", m.mime_type)
        if not m.chunked:
            self.set_header("Content-Length", str(len(m.data)))
        self.graph.served[media_id] = 0
        self.graph.finished[media_id] = None
        view = memoryview(m.data)
        try:
            for start in range(0, len(m.data), PIECE):
                if m.piece_delay:
                    await asyncio.sleep(m.piece_delay)
                piece = view[start : start + PIECE]
                self.write(bytes(piece))
                await self.flush()
                self.graph.served[media_id] += len(piece)
        except tornado.iostream.StreamClosedError:
            self.graph.finished[media_id] = False
            return
        self.graph.finished[media_id] = True
        self.finish()


class _RedirectHandler(tornado.web.RequestHandler):
    def initialize(self, graph: FakeGraph) -> None:
        self.graph = graph

    def get(self) -> None:
        # Records what reached it, then sends the client on to ``?to=``.
        self.graph.requests.append(
            (self.request.uri or "", self.request.headers.get("Authorization", ""))
        )
        self.redirect(self.get_argument("to"))


@asynccontextmanager
async def running_fake_graph(token: str = TOKEN) -> AsyncIterator[FakeGraph]:
    """A started fake on 127.0.0.1 (any free port), in the caller's loop."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    graph = FakeGraph(f"http://127.0.0.1:{port}", token)
    app = tornado.web.Application(
        [
            (rf"/{VERSION}/([^/]+)", _MetadataHandler, {"graph": graph}),
            (r"/download/([^/]+)", _DownloadHandler, {"graph": graph}),
            (r"/redirect", _RedirectHandler, {"graph": graph}),
        ]
    )
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    try:
        yield graph
    finally:
        server.stop()
        await server.close_all_connections()
