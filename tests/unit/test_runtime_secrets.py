"""Secret rotation in the running sidecar (every secret, and what needs a restart), and the
warning for gRPC served off loopback without authentication."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_http_runtime import make_config
from wahook import runtime


async def test_reload_swaps_every_secret_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = make_config(
        tmp_path,
        WAHOOK_VERIFY_TOKEN="v1",
        WAHOOK_GRPC_TOKEN="g1",
        WAHOOK_GRAPH_ACCESS_TOKEN="graph1",
    )
    sidecar = runtime.Sidecar(old)
    await sidecar.start()
    try:
        caplog.set_level(logging.INFO, logger="wahook")
        new = make_config(
            tmp_path,
            WAHOOK_APP_SECRET="s2",
            WAHOOK_VERIFY_TOKEN="v2",
            WAHOOK_GRPC_TOKEN="g2,g1",
            WAHOOK_GRAPH_ACCESS_TOKEN="graph2",
        )
        sidecar.reload_secrets(new)
        assert sidecar.deps.verify_token == "v2"
        assert sidecar.tokens.accepts("Bearer g2")
        assert sidecar.tokens.accepts("Bearer g1")
        assert sidecar.media is not None
        assert sidecar.media._headers()["Authorization"] == "Bearer graph2"
        assert sidecar.deps.keyring is not None
        assert len(sidecar.deps.keyring) == 1  # type: ignore[arg-type]
        line = [r.getMessage() for r in caplog.records if "secrets reloaded" in r.getMessage()]
        assert line == ["secrets reloaded: app secrets, verify token, gRPC tokens, Graph API token"]
        # Turning token checks off (or on) is not a rotation: it needs a restart.
        sidecar.reload_secrets(make_config(tmp_path, WAHOOK_GRAPH_ACCESS_TOKEN="graph2"))
        assert sidecar.tokens.required
        assert "needs a restart" in caplog.text
        for secret in ("s2", "v2", "g2", "graph2"):
            assert secret not in caplog.text
    finally:
        await sidecar.drain()


def test_grpc_off_loopback_unauthenticated_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(
        tmp_path, WAHOOK_GRPC_HOST="0.0.0.0", WAHOOK_GRPC_ALLOW_UNAUTHENTICATED="1"
    )
    caplog.set_level(logging.WARNING, logger="wahook")
    assert runtime._grpc_credentials(config) is None
    assert "without a token or client certificates" in caplog.text
    caplog.clear()
    runtime._grpc_credentials(
        make_config(tmp_path, WAHOOK_GRPC_HOST="0.0.0.0", WAHOOK_GRPC_TOKEN="t")
    )
    assert caplog.text == ""
