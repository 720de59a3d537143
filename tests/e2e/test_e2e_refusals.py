"""End to end: each bad input to a real sidecar gets its own status and stores nothing."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import grpc
import pytest
from e2e_helpers import group_info, list_events, post
from wahook import samples
from wahook.v1 import service_pb2, service_pb2_grpc
from wahook_testkit import VERIFY_TOKEN, Certs, WahookFactory, sign

pytestmark = pytest.mark.e2e


async def test_bad_inputs_get_their_status_and_store_nothing(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    server = wahook_factory.start(tmp_path / "data", env={"WAHOOK_MAX_BODY_BYTES": "64KiB"})
    ctx = certs.client_context()
    url = server.webhook_url
    body = samples.body("text")

    def verify(token: str) -> str:
        q = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "8675309"}
        return url + "?" + urllib.parse.urlencode(q)

    cases = {
        "missing signature": post(url, body, ctx, signature=None),
        "wrong signature": post(url, body, ctx, signature=sign(body, "not-the-secret")),
        "malformed signature": post(url, body, ctx, signature="sha256=xyz"),
        "invalid JSON": post(url, b'{"object":', ctx),
        "oversized": post(url, b'{"pad":"' + b"x" * 70_000 + b'"}', ctx),
        "wrong method": post(url, body, ctx, method="PUT"),
        "wrong verify token": post(verify("wrong"), b"", ctx, method="GET"),
    }
    statuses = {name: status for name, (status, _) in cases.items()}
    assert statuses == {
        "missing signature": 401,
        "wrong signature": 401,
        "malformed signature": 401,
        "invalid JSON": 400,
        "oversized": 413,
        "wrong method": 405,
        "wrong verify token": 403,
    }
    assert b"8675309" not in cases["wrong verify token"][1]
    assert json.loads(cases["invalid JSON"][1])["error"] == "PayloadError"
    # The right token passes, echoing the challenge.
    assert post(verify(VERIFY_TOKEN), b"", ctx, method="GET") == (200, b"8675309")

    async with grpc.aio.insecure_channel(server.grpc_target) as ch:
        stub = service_pb2_grpc.EventServiceStub(ch)
        bad_first = [
            service_pb2.SubscribeRequest(),  # no options
            service_pb2.SubscribeRequest(options=service_pb2.SubscribeOptions()),  # no group
            service_pb2.SubscribeRequest(
                options=service_pb2.SubscribeOptions(consumer_group="bad group!")
            ),
        ]
        for req in bad_first:
            call = stub.Subscribe(iter([req]))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details()

    assert await list_events(server.grpc_target) == []
    assert await group_info(server.grpc_target, "bad group!") is None
    assert "Traceback" not in server.stderr()
