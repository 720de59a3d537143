"""/healthz, /readyz, /metrics, access logs and HTTPS of the webhook front."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import urllib.parse
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.iostream
import tornado.netutil
from wahook import samples, tls
from wahook.core.signature import Keyring
from wahook.errors import ConfigError, LogUnavailableError
from wahook.http.app import build_deps, make_http_server
from wahook.http.limits import FrontLimits
from wahook.store.sqlite import SqliteEventLog
from wahook_testkit import APP_SECRET, VERIFY_TOKEN, Certs, HttpFront, sign


async def test_healthz(http_front: HttpFront) -> None:
    r = await http_front.fetch("/healthz")
    assert r.code == 200
    assert r.body == b"ok\n"


async def test_readyz_ready_then_not_when_log_closed(http_front: HttpFront) -> None:
    r = await http_front.fetch("/readyz")
    assert r.code == 200
    await http_front.event_log.close()
    r = await http_front.fetch("/readyz")
    assert r.code == 503
    assert b"closed" in r.body


async def test_readyz_follows_the_ready_check(http_front: HttpFront) -> None:
    async def not_ready() -> None:
        raise LogUnavailableError("gRPC is not serving")

    http_front.deps.ready = not_ready
    r = await http_front.fetch("/readyz")
    assert r.code == 503
    assert b"gRPC is not serving" in r.body


async def test_metrics_count_requests_events_and_latency(http_front: HttpFront) -> None:
    body = samples.body("text")
    await http_front.post_webhook(body)
    await http_front.post_webhook(body)
    await http_front.post_webhook(body, signature=None)
    r = await http_front.fetch("/metrics")
    assert r.code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    assert 'wahook_http_requests_total{handler="webhook",method="POST",code="200"} 2' in text
    assert 'wahook_http_requests_total{handler="webhook",method="POST",code="401"} 1' in text
    assert "wahook_events_appended_total 1\n" in text
    assert "wahook_events_duplicate_total 1\n" in text
    assert "wahook_signature_failures_total 1\n" in text
    assert 'wahook_webhook_request_duration_seconds_bucket{le="+Inf"} 3' in text
    assert "wahook_webhook_request_duration_seconds_count 3" in text


async def test_access_log_has_no_query_secrets_or_content(
    http_front: HttpFront, caplog: pytest.LogCaptureFixture
) -> None:
    http_front.deps.access_log = "all"
    q = urllib.parse.urlencode(
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"}
    )
    with caplog.at_level(logging.INFO, logger="wahook.access"):
        await http_front.fetch("/webhook?" + q)
        await http_front.post_webhook(samples.body("text"))
    lines = [r.getMessage() for r in caplog.records if r.name == "wahook.access"]
    assert len(lines) == 2
    assert 'path="/webhook" status=200' in lines[0]
    assert "events=1 new=1" in lines[1]
    for line in lines:
        assert VERIFY_TOKEN not in line
        assert "Hello from wahook send" not in line
        assert APP_SECRET not in line


async def test_access_log_errors_mode_logs_refusals_only(
    http_front: HttpFront, caplog: pytest.LogCaptureFixture
) -> None:
    assert http_front.deps.access_log == "errors"  # the default
    with caplog.at_level(logging.INFO, logger="wahook.access"):
        ok = await http_front.post_webhook(samples.body("text"))
        refused = await http_front.post_webhook(
            b'{"object": "whatsapp_business_account"}', signature="sha256=" + "0" * 64
        )
        await http_front.fetch("/healthz")
    assert (ok.code, refused.code) == (200, 401)
    lines = [r.getMessage() for r in caplog.records if r.name == "wahook.access"]
    assert len(lines) == 1, lines
    assert "method=POST" in lines[0]
    assert "status=401" in lines[0]


async def test_access_log_off_logs_nothing_but_still_counts(
    http_front: HttpFront, caplog: pytest.LogCaptureFixture
) -> None:
    http_front.deps.access_log = "off"
    with caplog.at_level(logging.INFO, logger="wahook.access"):
        await http_front.post_webhook(b"{}", signature="sha256=" + "0" * 64)
    assert [r for r in caplog.records if r.name == "wahook.access"] == []
    text = (await http_front.fetch("/metrics")).body.decode()
    assert 'wahook_http_requests_total{handler="webhook",method="POST",code="401"} 1' in text


async def test_no_signature_mode_accepts_and_warns_every_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    event_log = await SqliteEventLog.open(tmp_path / "e.sqlite3")
    deps = build_deps(keyring=None, event_log=event_log, verify_token=None)
    server = make_http_server(deps, None)
    socks = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(socks)
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    url = f"http://127.0.0.1:{socks[0].getsockname()[1]}/webhook"
    try:
        with caplog.at_level(logging.WARNING, logger="wahook.http"):
            for _ in range(2):
                r = await client.fetch(url, method="POST", body=samples.body("text"))
                assert r.code == 200
        warnings = [r for r in caplog.records if "DISABLED" in r.getMessage()]
        assert len(warnings) == 2
    finally:
        client.close()
        server.stop()
        await event_log.close()


async def test_https_front_with_tls12_minimum(tmp_path: Path, certs: Certs) -> None:
    event_log = await SqliteEventLog.open(tmp_path / "e.sqlite3")
    deps = build_deps(keyring=Keyring([APP_SECRET]), event_log=event_log, verify_token=None)
    ctx = tls.server_context(certs.cert, certs.key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    server = make_http_server(deps, ctx)
    socks = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(socks)
    port = socks[0].getsockname()[1]
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        body = samples.body("text")
        r = await client.fetch(
            f"https://localhost:{port}/webhook",
            method="POST",
            body=body,
            headers={"X-Hub-Signature-256": sign(body)},
            ssl_options=certs.client_context(),
        )
        assert r.code == 200
    finally:
        client.close()
        server.stop()
        await event_log.close()


def test_server_context_refuses_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        tls.server_context(tmp_path / "no.pem", tmp_path / "no.key")


async def test_idle_keep_alive_connections_are_closed_busy_ones_are_not(tmp_path: Path) -> None:
    event_log = await SqliteEventLog.open(tmp_path / "e.sqlite3")
    deps = build_deps(keyring=Keyring([APP_SECRET]), event_log=event_log, verify_token=None)
    server = make_http_server(deps, None, limits=FrontLimits(idle_timeout=0.5))
    socks = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(socks)
    port = socks[0].getsockname()[1]
    body = samples.body("text")
    request = (
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (sign(body).encode(), len(body), body)
    )
    try:
        silent = await asyncio.open_connection("127.0.0.1", port)  # never sends a byte
        served = await asyncio.open_connection("127.0.0.1", port)  # one request, then idle
        busy = await asyncio.open_connection("127.0.0.1", port)  # a request every 0.1 s
        served[1].write(request)
        assert (await served[0].readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5
        while loop.time() < until:
            busy[1].write(request)
            head = await asyncio.wait_for(busy[0].readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await busy[0].readexactly(length)
            await asyncio.sleep(0.1)
        # Idle 1.5 s > 0.5 s: closed by the server (EOF), the busy one still answers.
        assert await asyncio.wait_for(silent[0].read(), 1) == b""
        rest = await asyncio.wait_for(served[0].read(), 1)
        assert rest.endswith(b'"new": 1}') or rest == b""
        assert served[0].at_eof()
        busy[1].write(request)
        assert (await busy[0].readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        for _, writer in (silent, served, busy):
            writer.close()
    finally:
        server.stop()
        await server.close_all_connections()
        await event_log.close()


async def test_front_connections_keep_tcp_nodelay_on_across_requests(tmp_path: Path) -> None:
    event_log = await SqliteEventLog.open(tmp_path / "e.sqlite3")
    deps = build_deps(keyring=Keyring([APP_SECRET]), event_log=event_log, verify_token=None)
    server = make_http_server(deps, None)
    streams: list[tornado.iostream.IOStream] = []
    handle_stream = server.handle_stream

    def recording(stream: tornado.iostream.IOStream, address: tuple[str, int]) -> None:
        handle_stream(stream, address)
        streams.append(stream)

    server.handle_stream = recording  # type: ignore[method-assign]
    socks = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(socks)
    body = samples.body("text")
    request = (
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: %s\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (sign(body).encode(), len(body), body)
    )
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", socks[0].getsockname()[1])
        for _ in range(2):  # Tornado would turn the flag off after each response
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            (stream,) = streams
            assert stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()
    finally:
        server.stop()
        await server.close_all_connections()
        await event_log.close()
