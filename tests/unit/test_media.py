"""wahook.media against a fake Graph API (tests/fake_graph.py) in the test's loop: the
bytes and their check, each failure's error, the size limit before the bytes, the token
kept out of messages and logs, and a paused consumer pausing the download."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
from collections.abc import AsyncIterator

import pytest
from fake_graph import TOKEN, FakeGraph, graph_error_body, running_fake_graph
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
from wahook.media import (
    CHUNK_SIZE,
    MediaClient,
    MediaInfo,
    MediaStats,
    check_media_id,
    graph_error,
    sha256_digest,
)
from wahook.rpc.convert import media_chunk_response
from wahook.v1 import service_pb2
from wahook_testkit import free_port

MEDIA_ID = "900000000000101"


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with running_fake_graph() as g:
        yield g


def client_for(graph: FakeGraph, token: str = TOKEN, **kw: object) -> MediaClient:
    return MediaClient(
        Secret(token),
        base_url=graph.base_url,
        api_version="v24.0",
        **kw,  # type: ignore[arg-type]
    )


async def download_all(client: MediaClient, media_id: str) -> tuple[MediaInfo, list[bytes]]:
    parts = [p async for p in client.download(media_id)]
    info, chunks = parts[0], parts[1:]
    assert isinstance(info, MediaInfo)
    assert all(isinstance(c, bytes) for c in chunks)
    return info, chunks  # type: ignore[return-value]


async def failure_of(client: MediaClient, media_id: str) -> tuple[WahookError, list[object]]:
    """The error a download ends with, and what it yielded before."""
    got: list[object] = []
    try:
        async for part in client.download(media_id):
            got.append(part)
    except WahookError as exc:
        return exc, got
    raise AssertionError(f"media {media_id} downloaded without an error")


async def test_download_yields_info_then_full_chunks_of_the_checked_bytes(
    graph: FakeGraph,
) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 1234)
    graph.add(MEDIA_ID, data, mime_type="image/jpeg")
    client = client_for(graph)
    try:
        info, chunks = await download_all(client, MEDIA_ID)
    finally:
        client.close()
    assert (info.media_id, info.mime_type, info.file_size) == (MEDIA_ID, "image/jpeg", len(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [CHUNK_SIZE] * 3 + [1234]
    # Both calls carried the bearer token, and only in the header.
    assert [auth for _, auth in graph.requests] == [f"Bearer {TOKEN}"] * 2
    assert all(TOKEN not in path for path, _ in graph.requests)
    assert "url" not in repr(info)


async def test_chunked_answer_and_string_file_size_and_base64_digest(graph: FakeGraph) -> None:
    data = os.urandom(100_000)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    graph.add(MEDIA_ID, data, chunked=True, file_size=str(len(data)), sha256=digest)
    client = client_for(graph, chunk_size=40_000)
    try:
        info, chunks = await download_all(client, MEDIA_ID)
    finally:
        client.close()
    assert info.file_size == len(data)
    assert info.sha256 == digest
    assert [len(c) for c in chunks] == [40_000, 40_000, 20_000]
    assert b"".join(chunks) == data


async def test_empty_file(graph: FakeGraph) -> None:
    graph.add(MEDIA_ID, b"")
    client = client_for(graph)
    try:
        info, chunks = await download_all(client, MEDIA_ID)
    finally:
        client.close()
    assert info.file_size == 0
    assert chunks == []


def test_sha256_digest_reads_hex_and_base64() -> None:
    raw = hashlib.sha256(b"x").digest()
    assert sha256_digest(raw.hex()) == raw
    assert sha256_digest(raw.hex().upper()) == raw
    assert sha256_digest(base64.b64encode(raw).decode()) == raw
    assert sha256_digest(base64.b64encode(raw).decode().rstrip("=")) == raw
    assert sha256_digest(base64.urlsafe_b64encode(raw).decode()) == raw
    for bad in ("", "abc", "z" * 64, base64.b64encode(b"short").decode(), "q1w2e3r4+base64digest="):
        assert sha256_digest(bad) is None, bad


@pytest.mark.parametrize(
    ("media_id", "message"),
    [
        ("", "media_id is required"),
        ("me", "digits"),
        ("123/../me", "digits"),
        ("123?fields=url", "digits"),
        ("1" * 65, "digits"),
    ],
)
def test_media_id_must_be_digits(media_id: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message.replace("?", r"\?")):
        check_media_id(media_id)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (404, b"", NotFoundError),
        (400, graph_error_body("does not exist", 100, 33), NotFoundError),
        (401, graph_error_body("Invalid OAuth access token", 190), UpstreamDeniedError),
        (400, graph_error_body("Error validating access token", 190, 463), UpstreamDeniedError),
        (403, b"<html>forbidden</html>", UpstreamDeniedError),
        (400, graph_error_body("Permissions error", 200), UpstreamDeniedError),
        (429, b"", UpstreamRateLimitedError),
        (400, graph_error_body("Application request limit reached", 4), UpstreamRateLimitedError),
        (400, graph_error_body("Rate limit hit", 80007), UpstreamRateLimitedError),
        (500, b"", UpstreamUnavailableError),
        (503, b"not json", UpstreamUnavailableError),
        (400, graph_error_body("An unknown error occurred", 1), UpstreamUnavailableError),
        (400, graph_error_body("Invalid parameter", 100), UpstreamError),
        (418, b"[]", UpstreamError),
    ],
)
def test_graph_error_maps_meta_answers(status: int, body: bytes, kind: type[WahookError]) -> None:
    err = graph_error(status, body, "media 1")
    assert type(err) is kind
    assert err.message.startswith(f"media 1: Graph API answered {status}")


def test_graph_error_quotes_meta_but_never_the_token() -> None:
    body = graph_error_body(f"token {TOKEN} has expired", 190, 463)
    err = graph_error(401, body, "media 1", TOKEN)
    assert "(code 190, subcode 463): token *** has expired" in err.message
    assert TOKEN not in err.message


@pytest.mark.parametrize(
    ("how", "kind", "detail"),
    [
        ({"metadata_answer": (500, b"oops")}, UpstreamUnavailableError, "answered 500"),
        ({"metadata_answer": (429, graph_error_body("limit", 4))}, UpstreamRateLimitedError, "4"),
        ({"metadata_answer": (200, b"not json")}, UpstreamError, "no usable download url"),
        ({"metadata_answer": (200, b'{"id": "1"}')}, UpstreamError, "no usable download url"),
        ({"url": "ftp://127.0.0.1/x"}, UpstreamError, "no usable download url"),
        ({"download_answer": (404, graph_error_body("gone", 100))}, NotFoundError, "gone"),
        ({"download_answer": (500, b"")}, UpstreamUnavailableError, "answered 500"),
        ({"download_answer": (302, b"")}, UpstreamError, "answered 302"),
        ({"sha256": "not a digest"}, DataLossError, "no usable sha256"),
    ],
)
async def test_failures_before_any_byte(
    graph: FakeGraph, how: dict[str, object], kind: type[WahookError], detail: str
) -> None:
    graph.add(MEDIA_ID, b"abc" * 1000, **how)
    client = client_for(graph)
    try:
        err, got = await failure_of(client, MEDIA_ID)
    finally:
        client.close()
    assert type(err) is kind
    assert detail in err.message
    assert not [p for p in got if isinstance(p, bytes)]
    assert TOKEN not in err.message


async def test_unknown_id_and_bad_token(graph: FakeGraph) -> None:
    client = client_for(graph)
    bad = client_for(graph, token="EAAGwrong")
    graph.add(MEDIA_ID, b"x")
    try:
        err, _ = await failure_of(client, "123")
        assert type(err) is NotFoundError
        assert "does not exist" in err.message
        err, _ = await failure_of(bad, MEDIA_ID)
        assert type(err) is UpstreamDeniedError
        assert "WAHOOK_GRAPH_ACCESS_TOKEN" in err.message
        assert "EAAGwrong" not in err.message
    finally:
        client.close()
        bad.close()


async def test_unreachable_and_timeouts_are_unavailable(graph: FakeGraph) -> None:
    nowhere = MediaClient(Secret(TOKEN), base_url=f"http://127.0.0.1:{free_port()}")
    slow_meta = client_for(graph, metadata_timeout=0.2)
    slow_bytes = client_for(graph, download_timeout=0.5)
    graph.add("1", b"x", metadata_delay=2.0)
    graph.add("2", os.urandom(4 * CHUNK_SIZE), piece_delay=0.3)
    try:
        err, _ = await failure_of(nowhere, MEDIA_ID)
        assert type(err) is UpstreamUnavailableError
        assert "unreachable" in err.message
        err, _ = await failure_of(slow_meta, "1")
        assert type(err) is UpstreamUnavailableError
        err, got = await failure_of(slow_bytes, "2")
        assert type(err) is UpstreamUnavailableError
        assert isinstance(got[0], MediaInfo)
    finally:
        for c in (nowhere, slow_meta, slow_bytes):
            c.close()


async def test_wrong_digest_or_size_is_data_loss_after_the_chunks(graph: FakeGraph) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 7)
    graph.add("1", data, sha256=hashlib.sha256(b"other").hexdigest())
    graph.add("2", data, file_size=len(data) + 1)
    graph.add("3", data, file_size=len(data) - 1)
    client = client_for(graph)
    try:
        err, got = await failure_of(client, "1")
        assert type(err) is DataLossError
        assert "SHA-256 does not match" in err.message
        assert b"".join(p for p in got if isinstance(p, bytes)) == data
        err, _ = await failure_of(client, "2")
        assert type(err) is DataLossError
        assert f"received {len(data)} bytes" in err.message
        err, _ = await failure_of(client, "3")
        assert type(err) is DataLossError
        assert "more bytes than" in err.message
    finally:
        client.close()


async def test_too_large_is_refused_before_the_bytes_when_the_size_is_known(
    graph: FakeGraph,
) -> None:
    graph.add("1", os.urandom(5000))  # file_size says it
    graph.add("2", os.urandom(5000), file_size=0)  # only Content-Length says it
    graph.add("3", os.urandom(5000), file_size="", chunked=True)  # nothing says it
    client = client_for(graph, max_bytes=4096, chunk_size=1024)
    try:
        err, got = await failure_of(client, "1")
        assert type(err) is FailedPreconditionError
        assert "5000 bytes or more" in err.message
        assert "WAHOOK_MEDIA_MAX_BYTES" in err.message
        assert got == []
        assert graph.download_requests("1") == 0
        err, got = await failure_of(client, "2")
        assert type(err) is FailedPreconditionError
        assert [p for p in got if isinstance(p, bytes)] == []
        err, got = await failure_of(client, "3")
        assert type(err) is FailedPreconditionError
        assert sum(len(p) for p in got if isinstance(p, bytes)) <= 4096
    finally:
        client.close()


async def test_token_never_logged(graph: FakeGraph, caplog: pytest.LogCaptureFixture) -> None:
    graph.add("1", os.urandom(3000))
    graph.add("2", b"x" * 10, sha256="bad")
    graph.add("3", os.urandom(5000), file_size=0)
    client = client_for(graph, max_bytes=4096)
    bad = client_for(graph, token="EAAGnope")
    with caplog.at_level(logging.DEBUG):
        try:
            await download_all(client, "1")
            for media_id in ("2", "3", "404"):
                await failure_of(client, media_id)
            await failure_of(bad, "1")
        finally:
            client.close()
            bad.close()
    text = "\n".join(r.getMessage() + (caplog.text if r.exc_info else "") for r in caplog.records)
    assert TOKEN not in text
    assert TOKEN not in caplog.text
    assert "Uncaught exception" not in caplog.text  # stopping a download is not an error


async def test_stopping_early_closes_the_connection(graph: FakeGraph) -> None:
    data = os.urandom(48 * 1024 * 1024)  # more than the socket buffers hold
    graph.add(MEDIA_ID, data)
    client = client_for(graph)
    try:
        parts = client.download(MEDIA_ID)
        got = [await anext(parts), await anext(parts)]
        await parts.aclose()
        assert isinstance(got[1], bytes)
        # Abandoned: neither completed nor failed.
        assert (client.stats.completed, client.stats.failed) == (0, 0)
        async with asyncio.timeout(5):
            while graph.finished.get(MEDIA_ID) is None:  # noqa: ASYNC110 (the fake's state)
                await asyncio.sleep(0.01)
        assert graph.finished[MEDIA_ID] is False
        assert graph.served[MEDIA_ID] < len(data) // 2
    finally:
        client.close()


async def test_a_paused_consumer_pauses_the_download(graph: FakeGraph) -> None:
    data = os.urandom(48 * 1024 * 1024)
    graph.add(MEDIA_ID, data)
    client = client_for(graph)
    try:
        parts = client.download(MEDIA_ID)
        await anext(parts)
        await anext(parts)
        # The consumer stalls; the fake keeps trying to write, and is held back.
        stalled_at = await graph.stalled(MEDIA_ID)
        assert stalled_at < len(data) // 2
        rest = [p async for p in parts]
        assert graph.finished[MEDIA_ID] is True
        assert sum(len(p) for p in rest if isinstance(p, bytes)) == len(data) - CHUNK_SIZE
    finally:
        client.close()


@pytest.mark.parametrize("size", [1, 127, 128, 16383, 16384, CHUNK_SIZE])
def test_media_chunk_response_is_the_serialised_message(size: int) -> None:
    data = os.urandom(size)
    encoded = media_chunk_response(data)
    assert encoded == service_pb2.DownloadMediaResponse(chunk=data).SerializeToString()
    assert service_pb2.DownloadMediaResponse.FromString(encoded).chunk == data


async def test_stats_count_downloads_failures_and_bytes(graph: FakeGraph) -> None:
    graph.add("1", b"a" * 1000)
    graph.add("2", b"b" * 500, sha256=hashlib.sha256(b"c").hexdigest())
    client = client_for(graph)
    try:
        await download_all(client, "1")
        await download_all(client, "1")
        await failure_of(client, "2")
        await failure_of(client, "3")
    finally:
        client.close()
    assert client.stats == MediaStats(completed=2, failed=2, bytes_received=2500)


async def test_redirects_keep_the_token_only_on_the_same_origin(graph: FakeGraph) -> None:
    data = os.urandom(1000)
    same = f"{graph.base_url}/download/1"
    other = same.replace("127.0.0.1", "localhost")  # another origin, the same fake
    graph.add("1", data, url=f"{graph.base_url}/redirect?to={same}")
    graph.add("2", data, url=f"{graph.base_url}/redirect?to={other}")
    client = client_for(graph)
    try:
        _, chunks = await download_all(client, "1")
        assert b"".join(chunks) == data
        graph.requests.clear()
        err, _ = await failure_of(client, "2")
    finally:
        client.close()
    # Tornado dropped the Authorization header on the way to the other origin, so the
    # fake refused the download there.
    assert type(err) is UpstreamDeniedError
    assert [auth for path, auth in graph.requests if path.startswith("/download/")] == [""]
