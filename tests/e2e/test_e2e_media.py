"""End to end: DownloadMedia through a real `wahook serve` and a real gRPC channel, against
a fake Graph API (tests/fake_graph.py) in the test's loop: bytes, chunks and digest, every
error status, streaming with flow control, the access token never in the sidecar's logs,
and `wahook media`."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from e2e_helpers import post
from fake_graph import TOKEN, VERSION, FakeGraph, graph_error_body, running_fake_graph
from wahook.client import download_media
from wahook.media import CHUNK_SIZE
from wahook.v1 import service_pb2, service_pb2_grpc
from wahook_testkit import Certs, WahookFactory, WahookProcess, free_port

pytestmark = pytest.mark.e2e

CHUNK = CHUNK_SIZE


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with running_fake_graph() as g:
        yield g


def start(
    factory: type[WahookFactory], tmp_path: Path, graph: FakeGraph, **env: str
) -> WahookProcess:
    return factory.start(
        tmp_path / "var",
        env={
            "WAHOOK_GRAPH_ACCESS_TOKEN": TOKEN,
            "WAHOOK_GRAPH_BASE_URL": graph.base_url,
            "WAHOOK_GRAPH_API_VERSION": VERSION,
            "WAHOOK_LOG_LEVEL": "DEBUG",
            **env,
        },
    )


async def responses(
    target: str, media_id: str
) -> tuple[list[service_pb2.DownloadMediaResponse], grpc.StatusCode, str]:
    """Every response of one DownloadMedia call, and how it ended."""
    got: list[service_pb2.DownloadMediaResponse] = []
    async with grpc.aio.insecure_channel(target) as ch:
        call = service_pb2_grpc.EventServiceStub(ch).DownloadMedia(
            service_pb2.DownloadMediaRequest(media_id=media_id)
        )
        try:
            async for r in call:
                got.append(r)
        except grpc.aio.AioRpcError as exc:
            return got, exc.code(), exc.details() or ""
        return got, await call.code(), await call.details()


async def test_download_media_statuses_and_no_token_in_logs(
    tmp_path: Path, wahook_factory: type[WahookFactory], graph: FakeGraph, certs: Certs
) -> None:
    server = start(wahook_factory, tmp_path, graph)
    data = os.urandom(5 * CHUNK + 99)
    graph.add("900000000000101", data, mime_type="image/jpeg")
    graph.add("2", b"x" * 1000, sha256=hashlib.sha256(b"y").hexdigest())
    graph.add("3", b"x", file_size=200 * 1024 * 1024)
    graph.add("4", b"x", metadata_answer=(429, graph_error_body("Too many calls", 4)))
    graph.add("5", b"x", metadata_answer=(500, b"oops"))
    graph.add("6", b"x", url=f"http://127.0.0.1:{free_port()}/gone")
    graph.add("7", b"x", metadata_answer=(404, graph_error_body("Not found", 100)))
    target = server.grpc_target

    got, code, _ = await responses(target, "900000000000101")
    assert code == grpc.StatusCode.OK
    assert got[0].WhichOneof("part") == "info"
    assert got[0].info == service_pb2.MediaInfo(
        media_id="900000000000101",
        mime_type="image/jpeg",
        sha256=hashlib.sha256(data).hexdigest(),
        file_size=len(data),
    )
    assert [r.WhichOneof("part") for r in got[1:]] == ["chunk"] * 6
    assert [len(r.chunk) for r in got[1:]] == [CHUNK] * 5 + [99]
    assert b"".join(r.chunk for r in got[1:]) == data

    got, code, details = await responses(target, "2")
    assert code == grpc.StatusCode.DATA_LOSS
    assert "discard" in details
    assert b"".join(r.chunk for r in got[1:]) == b"x" * 1000  # the chunks came first

    expected = {
        "": (grpc.StatusCode.INVALID_ARGUMENT, "media_id is required"),
        "me/accounts": (grpc.StatusCode.INVALID_ARGUMENT, "digits"),
        "404": (grpc.StatusCode.NOT_FOUND, "does not exist"),
        "7": (grpc.StatusCode.NOT_FOUND, "Not found"),
        "3": (grpc.StatusCode.FAILED_PRECONDITION, "WAHOOK_MEDIA_MAX_BYTES"),
        "4": (grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many calls"),
        "5": (grpc.StatusCode.UNAVAILABLE, "answered 500"),
        "6": (grpc.StatusCode.UNAVAILABLE, "unreachable"),
    }
    for media_id, (want, text) in expected.items():
        got, code, details = await responses(target, media_id)
        assert (code, media_id) == (want, media_id), details
        assert text in details, (media_id, details)
        assert not [r for r in got if r.WhichOneof("part") == "chunk"], media_id
    assert graph.download_requests("3") == 0  # refused on Meta's file_size alone

    graph.token = "EAAGrotated-elsewhere"  # the sidecar's token is now refused
    got, code, details = await responses(target, "900000000000101")
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "WAHOOK_GRAPH_ACCESS_TOKEN" in details
    assert got == []
    graph.token = TOKEN

    # The Python client's helper, into memory and into a file.
    media = await download_media(target, "900000000000101")
    assert (media.data, media.size, media.mime_type) == (data, len(data), "image/jpeg")
    out = tmp_path / "out.jpg"
    with out.open("wb") as f:
        media = await download_media(target, "900000000000101", out=f)
    assert out.read_bytes() == data
    assert (media.data, media.size) == (b"", len(data))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await download_media(target, "2")
    assert info.value.code() == grpc.StatusCode.DATA_LOSS

    ctx = certs.client_context()
    status, body = await asyncio.to_thread(
        post, server.http_url + "/metrics", b"", ctx, signature=None, method="GET"
    )
    assert status == 200
    metrics = body.decode()
    # OK: the first call and the helper's two. Failed: "2" twice, the six Graph refusals
    # of the table and the refused token (the two INVALID_ARGUMENT never reach Meta).
    assert "wahook_media_downloads_total 3\n" in metrics
    assert "wahook_media_download_failures_total 9\n" in metrics
    assert "wahook_media_bytes_received_total " in metrics
    assert server.terminate() == 0
    log = server.stderr()
    assert "media download on" in log
    assert "DownloadMedia: media 4: Graph API answered 429" in log  # operators see refusals
    assert TOKEN not in log
    assert "Uncaught exception" not in log


async def test_a_slow_reader_slows_the_download(
    tmp_path: Path, wahook_factory: type[WahookFactory], graph: FakeGraph
) -> None:
    server = start(wahook_factory, tmp_path, graph)
    data = os.urandom(64 * 1024 * 1024)
    graph.add("1", data)
    graph.add("2", data)
    async with grpc.aio.insecure_channel(server.grpc_target) as ch:
        stub = service_pb2_grpc.EventServiceStub(ch)
        call = stub.DownloadMedia(service_pb2.DownloadMediaRequest(media_id="1"))
        assert (await call.read()).WhichOneof("part") == "info"
        assert len((await call.read()).chunk) == CHUNK
        # The reader stalls: the sidecar stops reading from Meta.
        stalled_at = await graph.stalled("1", quiet=0.5)
        assert stalled_at < len(data) // 2
        received = CHUNK
        digest = hashlib.sha256(data[:CHUNK])
        while not isinstance(r := await call.read(), type(grpc.aio.EOF)):
            received += len(r.chunk)
            digest.update(r.chunk)
        assert await call.code() == grpc.StatusCode.OK
        assert (received, digest.digest()) == (len(data), hashlib.sha256(data).digest())

        # A reader that goes away ends the sidecar's download from Meta too.
        call = stub.DownloadMedia(service_pb2.DownloadMediaRequest(media_id="2"))
        await call.read()
        await call.read()
        call.cancel()
        async with asyncio.timeout(10):
            while graph.finished.get("2") is None:  # noqa: ASYNC110 (the fake's state)
                await asyncio.sleep(0.02)
        assert graph.finished["2"] is False
    assert server.terminate() == 0
    assert "Uncaught exception" not in server.stderr()


async def test_without_a_token_and_the_cli(
    tmp_path: Path, wahook_factory: type[WahookFactory], graph: FakeGraph
) -> None:
    server = wahook_factory.start(tmp_path / "var", env={"WAHOOK_GRAPH_BASE_URL": graph.base_url})
    got, code, details = await responses(server.grpc_target, "900000000000101")
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "WAHOOK_GRAPH_ACCESS_TOKEN" in details
    assert got == []
    assert graph.requests == []
    server.terminate()

    server = start(wahook_factory, tmp_path, graph)
    data = os.urandom(3 * CHUNK)
    graph.add("900000000000101", data, mime_type="image/png")
    graph.add("2", b"x" * 10, sha256=hashlib.sha256(b"y").hexdigest())
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHOOK_")}

    def wahook(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "wahook.cli", "media", "--target", server.grpc_target, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
            check=False,
        )

    done = await asyncio.to_thread(wahook, "900000000000101")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "900000000000101.png").read_bytes() == data
    assert f"{len(data)} bytes (image/png, sha256 checked)".encode() in done.stderr
    done = await asyncio.to_thread(wahook, "900000000000101", "-o", "-")
    assert (done.returncode, done.stdout) == (0, data)
    done = await asyncio.to_thread(wahook, "2", "-o", str(tmp_path / "bad.bin"))
    assert done.returncode == 1
    assert b"DATA_LOSS" in done.stderr
    assert not (tmp_path / "bad.bin").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".wahook-media-")]
    done = await asyncio.to_thread(wahook, "nope")
    assert done.returncode == 1
    assert b"INVALID_ARGUMENT" in done.stderr
