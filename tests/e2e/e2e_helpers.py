"""Helpers for the end-to-end tests: signed HTTPS posts, gRPC reads, and collecting events.

Every e2e test starts real `wahook serve` processes (tests/conftest.py's wahook_factory)
with real TLS and talks to them over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf import json_format
from wahook.cli import main as wahook_main
from wahook.client import Subscriber
from wahook.v1 import event_pb2, service_pb2, service_pb2_grpc
from wahook_testkit import APP_SECRET, sign

DATA = Path(__file__).resolve().parents[1] / "data"


def fixture_files() -> list[Path]:
    return sorted(p for p in DATA.glob("*.json") if not p.name.endswith(".expected.json"))


def post(
    url: str,
    body: bytes,
    ctx: ssl.SSLContext | None,
    *,
    signature: str | None = "sign",
    method: str = "POST",
    secret: str = APP_SECRET,
) -> tuple[int, bytes]:
    """One request on a fresh connection; returns (status, body)."""
    u = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname or "", u.port, context=ctx, timeout=30)
    else:
        conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers["X-Hub-Signature-256"] = sign(body, secret)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    try:
        conn.request(
            method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wahook_normalize(path: Path) -> list[event_pb2.Event]:
    """What `wahook normalize FILE` prints, parsed back into events."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = wahook_main(["normalize", str(path)])
    assert code == 0, path
    return [
        json_format.Parse(line, event_pb2.Event())
        for line in out.getvalue().splitlines()
        if line.strip()
    ]


def comparable(event: event_pb2.Event) -> dict[str, object]:
    """The event without what differs between runs (sequence, received time)."""
    e = event_pb2.Event()
    e.CopyFrom(event)
    e.ClearField("sequence")
    e.ClearField("received_time")
    return json_format.MessageToDict(e)


async def list_events(target: str) -> list[event_pb2.Event]:
    events: list[event_pb2.Event] = []
    async with grpc.aio.insecure_channel(target) as ch:
        stub = service_pb2_grpc.EventServiceStub(ch)
        token = ""
        while True:
            page = await stub.ListEvents(
                service_pb2.ListEventsRequest(page_size=1000, page_token=token)
            )
            events.extend(page.events)
            token = page.next_page_token
            if not token:
                return events


async def group_info(target: str, name: str) -> service_pb2.ConsumerGroup | None:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = service_pb2_grpc.EventServiceStub(ch)
        try:
            resp = await stub.GetConsumerGroup(
                service_pb2.GetConsumerGroupRequest(consumer_group=name)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return resp.group


async def collect(
    target: str,
    group: str,
    want: int,
    *,
    timeout: float = 20.0,  # noqa: ASYNC109 (a budget for the whole collection)
    ack: bool = True,
    quiet: float = 0.0,
    **kwargs: object,
) -> list[service_pb2.Delivery]:
    """Deliveries for ``group`` until ``want`` arrived (then ``quiet`` more seconds, to
    catch extras) or ``timeout``; acked unless ``ack`` is False."""
    got: list[service_pb2.Delivery] = []
    sub = Subscriber(target, group, backoff_initial=0.05, backoff_max=0.5, **kwargs)  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(timeout):
            async for d in sub:
                got.append(d)
                if ack:
                    await sub.ack(d)
                if len(got) >= want:
                    break
        if quiet:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(quiet):
                    async for d in sub:
                        got.append(d)
                        if ack:
                            await sub.ack(d)
    except TimeoutError:
        pass
    finally:
        await sub.stop()
    return got


def json_body(r: bytes) -> dict[str, object]:
    data: dict[str, object] = json.loads(r)
    return data


def wait_until(
    condition: Callable[[], bool], what: str = "the condition", within: float = 30.0
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``within`` seconds (a
    bound for a hung server, never a timing: it ends as soon as the condition holds)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
