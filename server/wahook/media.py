"""Media download from the WhatsApp Cloud API: a media id in, checked bytes out, streamed.

A message event carries a media id (``Message.image.id``, ...), never the bytes. Two
Graph API calls fetch them, both with ``Authorization: Bearer <access token>``:

1. ``GET {base}/{version}/{media_id}`` answers JSON with ``url`` (a download URL that
   expires within minutes, so it is asked for afresh on every download), ``mime_type``,
   ``sha256`` (hex), ``file_size`` (a number, or digits in a string), ``id`` and
   ``messaging_product``;
2. ``GET {url}`` with the same header answers the bytes.

Meta reports failures as ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``; ``graph_error`` turns them into wahook errors, so the gRPC seam gives
a specific status (an unknown id is a 400 with code 100 / subcode 33 as often as a 404;
an invalid token is code 190 on a 400 or a 401).

The access token is only ever put in the Authorization header: not in a URL, a log line
or an error message (Meta's own messages are passed through ``_redact`` in case one ever
quotes it). Tornado drops the header on a redirect to another origin.

Flow control: Tornado's ``streaming_callback`` is a coroutine here (simple_httpclient,
Tornado 6.6+): the next chunk is not read from the socket until the previous one is in
a queue of ``QUEUE_CHUNKS``, which the rpc drains only as fast as the gRPC stream's
writes complete. A slow reader therefore slows the download (TCP pushes back on Meta)
instead of the sidecar buffering a 100 MB file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tornado import httputil
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from wahook.config import Secret
from wahook.errors import (
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UpstreamDeniedError,
    UpstreamError,
    UpstreamRateLimitedError,
    UpstreamUnavailableError,
    WahookError,
)

# Bytes per DownloadMediaResponse.chunk, well under gRPC's 4 MiB message cap. The cost is
# per message (in grpc and the loop), so fewer, larger chunks are cheaper than 64 KiB
# (figures: docs/architecture.md, "Why it is fast": media download).
CHUNK_SIZE = 256 * 1024
QUEUE_CHUNKS = 4  # chunks read ahead of the gRPC stream, per download
CONNECT_TIMEOUT = 10.0
METADATA_TIMEOUT = 30.0
# The whole download, a slow reader included: 100 MB in 10 minutes is 170 kB/s.
DOWNLOAD_TIMEOUT = 600.0
MAX_CONCURRENT = 32  # downloads in flight; more wait in Tornado's queue (within the timeouts)
ERROR_BODY_LIMIT = 64 * 1024  # of an error answer, kept to quote Meta's message

MEDIA_ID = re.compile(r"[0-9]{1,64}")

# Graph API error codes (developers.facebook.com, "Handling Errors" and the WhatsApp
# Cloud API error codes): rate limits, and token or permission problems.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429})
AUTH_CODES = frozenset({10, 102, 190})  # and 200-299, the permission codes
TEMPORARY_CODES = frozenset({1, 2})  # "API Unknown", "API Service": retry later


@dataclass(frozen=True)
class MediaInfo:
    """What the Graph API says about a media file."""

    media_id: str
    mime_type: str
    sha256: str  # verbatim, as Meta gave it
    file_size: int  # 0: Meta did not say
    url: str = field(repr=False)  # short-lived; not worth a log line either


@dataclass
class MediaStats:
    """Counters since start, for /metrics."""

    completed: int = 0  # downloads that ended with every byte checked
    failed: int = 0  # downloads that ended with an error (before or after bytes)
    bytes_received: int = 0  # from the Graph API, every download included


def check_media_id(media_id: str) -> str:
    """The media id, or InvalidArgumentError. Meta's media ids are digits; anything else
    would let a caller steer the sidecar's token to another Graph path."""
    if not media_id:
        raise InvalidArgumentError("media_id is required")
    if not MEDIA_ID.fullmatch(media_id):
        raise InvalidArgumentError(
            f"media_id must be the digits of a Graph API media id, not {media_id[:80]!r}"
        )
    return media_id


def sha256_digest(text: str) -> bytes | None:
    """The 32-byte digest Meta means by ``text``: hex (the Graph API's media endpoint) or
    base64 (the webhook's ``sha256``); None when it is neither."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    return None


def _int_or_zero(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return 0


def graph_error(status: int, body: bytes, what: str, token: str = "") -> WahookError:
    """The wahook error for a Graph API answer ``status`` with ``body`` (Meta's error JSON,
    or anything else); ``what`` names the request in the message."""
    err: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        err = parsed["error"]
    code = err.get("code") if isinstance(err.get("code"), int) else None
    subcode = err.get("error_subcode") if isinstance(err.get("error_subcode"), int) else None
    message = err.get("message") if isinstance(err.get("message"), str) else ""
    detail = f"Graph API answered {status}"
    if code is not None:
        detail += f" (code {code}" + (f", subcode {subcode})" if subcode is not None else ")")
    if message:
        detail += ": " + _redact(message[:300], token)
    text = f"{what}: {detail}"
    if status == 404 or (code == 100 and subcode == 33):
        return NotFoundError(text)
    if status == 429 or code in RATE_LIMIT_CODES:
        return UpstreamRateLimitedError(text + "; retry later")
    if status in (401, 403) or code in AUTH_CODES or (code is not None and 200 <= code < 300):
        return UpstreamDeniedError(
            text + "; check WAHOOK_GRAPH_ACCESS_TOKEN (expired, revoked, or without the "
            "whatsapp_business_messaging permission)"
        )
    if status >= 500 or code in TEMPORARY_CODES:
        return UpstreamUnavailableError(text + "; retry later")
    return UpstreamError(text)


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


class _TransferStopped(Exception):
    """Raised inside Tornado's callbacks to close the download's connection; the reason
    is in ``_Transfer.failure``."""


class _QuietStops(logging.Filter):
    # Tornado logs any exception a streaming or header callback raises as an "Uncaught
    # exception" before closing the connection, which is the only way to stop a download
    # early. Those stops are ours and expected; everything else still logs.
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _TransferStopped)


_quiet_stops = _QuietStops()


class _Transfer:
    """One download in flight: the answer's status, the digest and count so far, and the
    hand-over of chunks from Tornado's reader to the consumer."""

    def __init__(self, info: MediaInfo, max_bytes: int) -> None:
        self.info = info
        self.max_bytes = max_bytes
        self.status = 0
        self.error_body = bytearray()
        self.digest = hashlib.sha256()
        self.received = 0
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_CHUNKS)
        self.failure: WahookError | None = None
        self.stopped = False

    def _fail(self, error: WahookError) -> _TransferStopped:
        self.failure = error
        return _TransferStopped()

    def on_header(self, line: str) -> None:
        if not self.status:
            self.status = httputil.parse_response_start_line(line.strip()).code
            return
        name, _, value = line.partition(":")
        if self.status == 200 and name.strip().lower() == "content-length":
            size = _int_or_zero(value)
            if size > self.max_bytes:
                raise self._fail(_too_large(self.info.media_id, size, self.max_bytes))

    async def on_chunk(self, chunk: bytes) -> None:
        if self.stopped:
            raise _TransferStopped
        if self.status != 200:
            room = ERROR_BODY_LIMIT - len(self.error_body)
            self.error_body += chunk[: max(room, 0)]
            return
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise self._fail(_too_large(self.info.media_id, self.received, self.max_bytes))
        expected = self.info.file_size
        if expected and self.received > expected:
            raise self._fail(
                DataLossError(
                    f"media {self.info.media_id}: more bytes than the {expected} the Graph "
                    "API announced; discard what was received"
                )
            )
        self.digest.update(chunk)
        await self.queue.put(chunk)
        if self.stopped:
            raise _TransferStopped

    def stop(self) -> None:
        """The consumer went away: free a blocked ``on_chunk`` so it can close the
        connection."""
        self.stopped = True
        while not self.queue.empty():
            self.queue.get_nowait()

    async def chunks(self, fetch: asyncio.Future[HTTPResponse]) -> AsyncIterator[bytes]:
        """The chunks in order until the fetch is over."""
        while True:
            if not self.queue.empty():
                yield self.queue.get_nowait()
                continue
            if fetch.done():
                return
            getter = asyncio.ensure_future(self.queue.get())
            try:
                await asyncio.wait((getter, fetch), return_when=asyncio.FIRST_COMPLETED)
                got = getter.done()
            finally:
                # Also when the consumer is cancelled here: no getter left pending.
                if not getter.done():
                    getter.cancel()
            if got:
                yield getter.result()


def _too_large(media_id: str, size: int, limit: int) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"media {media_id} is {size} bytes or more, over this sidecar's limit of {limit} "
        "(WAHOOK_MEDIA_MAX_BYTES)"
    )


def _retrieve_exception(fetch: asyncio.Future[HTTPResponse]) -> None:
    if not fetch.cancelled():
        fetch.exception()


class MediaClient:
    """Downloads media from the Graph API with one access token.

    ``download(media_id)`` yields the MediaInfo, then the bytes in chunks of at most
    ``chunk_size``; it raises a WahookError (see the module docstring) on any failure,
    DataLossError after the last chunk when the bytes do not match Meta's sha256 or size.
    Make it on the loop it serves; ``close()`` when done.
    """

    def __init__(
        self,
        access_token: Secret,
        *,
        base_url: str = "https://graph.facebook.com",
        api_version: str = "v24.0",
        max_bytes: int = 100 * 1024 * 1024,
        chunk_size: int = CHUNK_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT,
        metadata_timeout: float = METADATA_TIMEOUT,
        download_timeout: float = DOWNLOAD_TIMEOUT,
    ) -> None:
        self._token = access_token
        self._base = base_url.rstrip("/")
        self._version = api_version
        self.max_bytes = max_bytes
        self._chunk_size = chunk_size
        self._connect_timeout = connect_timeout
        self._metadata_timeout = metadata_timeout
        self._download_timeout = download_timeout
        self.stats = MediaStats()
        # Over our own limit, so that it is our check (a specific status) that stops a
        # large file, not Tornado's.
        self._http = SimpleAsyncHTTPClient(
            force_instance=True,
            max_clients=MAX_CONCURRENT,
            max_body_size=max_bytes + ERROR_BODY_LIMIT + 1,
        )
        logging.getLogger("tornado.application").addFilter(_quiet_stops)

    def close(self) -> None:
        self._http.close()

    def replace_token(self, access_token: Secret) -> None:
        """Use ``access_token`` from the next request on (a rotated token, on SIGHUP)."""
        self._token = access_token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self._token.reveal(), "User-Agent": "wahook"}

    def _unreachable(self, what: str, exc: BaseException) -> UpstreamUnavailableError:
        reason = _redact(str(exc) or type(exc).__name__, self._token.reveal())
        return UpstreamUnavailableError(f"{what}: Graph API unreachable ({reason[:200]})")

    async def metadata(self, media_id: str) -> MediaInfo:
        """Ask the Graph API for the media's URL, type, digest and size."""
        check_media_id(media_id)
        what = f"media {media_id}"
        request = HTTPRequest(
            f"{self._base}/{self._version}/{media_id}",
            headers=self._headers(),
            connect_timeout=self._connect_timeout,
            request_timeout=self._metadata_timeout,
        )
        try:
            response = await self._http.fetch(request, raise_error=False)
        except Exception as exc:
            raise self._unreachable(what, exc) from None
        if response.code != 200:
            raise graph_error(response.code, response.body or b"", what, self._token.reveal())
        try:
            data = json.loads(response.body)
        except ValueError:
            data = None
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not self._acceptable(url):
            raise UpstreamError(f"{what}: the Graph API answer has no usable download url")
        assert isinstance(data, dict)
        return MediaInfo(
            media_id=media_id,
            mime_type=str(data.get("mime_type") or ""),
            sha256=str(data.get("sha256") or ""),
            file_size=_int_or_zero(data.get("file_size")),
            url=url,
        )

    def _acceptable(self, url: str) -> bool:
        # The token goes to this URL: https only, unless the Graph base itself is plain
        # http (a local fake in tests).
        scheme = urllib.parse.urlsplit(url).scheme
        return scheme == "https" or (scheme == "http" and self._base.startswith("http://"))

    async def download(self, media_id: str) -> AsyncGenerator[MediaInfo | bytes, None]:
        """MediaInfo, then the bytes; see the class docstring."""
        try:
            # aclosing: a consumer that stops closes the transfer now, not at collection.
            async with contextlib.aclosing(self._download(media_id)) as parts:
                async for part in parts:
                    yield part
        except WahookError:
            self.stats.failed += 1
            raise
        self.stats.completed += 1

    async def _download(self, media_id: str) -> AsyncGenerator[MediaInfo | bytes, None]:
        info = await self.metadata(media_id)
        what = f"media {media_id}"
        expected = sha256_digest(info.sha256)
        if expected is None:
            raise DataLossError(f"{what}: the Graph API gave no usable sha256 to check it by")
        if info.file_size > self.max_bytes:
            raise _too_large(media_id, info.file_size, self.max_bytes)
        yield info
        transfer = _Transfer(info, self.max_bytes)
        request = HTTPRequest(
            info.url,
            headers=self._headers(),
            connect_timeout=self._connect_timeout,
            request_timeout=self._download_timeout,
            streaming_callback=transfer.on_chunk,
            header_callback=transfer.on_header,
        )
        fetch = asyncio.ensure_future(self._http.fetch(request, raise_error=False))
        fetch.add_done_callback(_retrieve_exception)
        try:
            pending = bytearray()
            async for chunk in transfer.chunks(fetch):
                if not pending and len(chunk) == self._chunk_size:
                    yield chunk
                    continue
                pending += chunk
                while len(pending) >= self._chunk_size:
                    yield bytes(pending[: self._chunk_size])
                    del pending[: self._chunk_size]
            if transfer.failure is None and not fetch.exception() and pending:
                yield bytes(pending)
        finally:
            transfer.stop()
            self.stats.bytes_received += transfer.received
        if transfer.failure is not None:
            raise transfer.failure
        if fetch.exception() is not None:
            raise self._unreachable(what, fetch.exception())  # type: ignore[arg-type]
        response = fetch.result()
        if response.code != 200:
            raise graph_error(response.code, bytes(transfer.error_body), what, self._token.reveal())
        if info.file_size and transfer.received != info.file_size:
            raise DataLossError(
                f"{what}: received {transfer.received} bytes, the Graph API announced "
                f"{info.file_size}; discard them"
            )
        if transfer.digest.digest() != expected:
            raise DataLossError(
                f"{what}: the bytes' SHA-256 does not match the Graph API's; discard them"
            )
