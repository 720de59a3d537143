"""Shared pytest fixtures (free ports, TLS certificates, sidecar processes, the HTTP front).

The helpers they use live in tests/wahook_testkit.py, which test modules import by that
unique name (several directories have a conftest.py, so `from conftest import` is
ambiguous).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.netutil
from wahook import tls
from wahook.core.signature import Keyring
from wahook.http.app import build_deps, make_http_server
from wahook.store.sqlite import SqliteEventLog
from wahook_testkit import (
    APP_SECRET,
    VERIFY_TOKEN,
    Certs,
    HttpFront,
    WahookFactory,
    WahookProcess,
    start_wahook,
)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A self-signed certificate for localhost and 127.0.0.1, made once per session."""
    d = tmp_path_factory.mktemp("tls")
    c = Certs(d / "cert.pem", d / "key.pem")
    tls.generate_self_signed(c.cert, c.key)
    return c


@pytest.fixture
def wahook_factory(certs: Certs) -> Iterator[type[WahookFactory]]:
    """Call ``wahook_factory.start(data_dir, ...)``; every process is stopped at teardown."""
    started: list[WahookProcess] = []

    class _Factory(WahookFactory):
        @staticmethod
        def start(data_dir: Path, **kwargs: object) -> WahookProcess:
            kwargs.setdefault("certs", certs)
            p = start_wahook(data_dir, **kwargs)  # type: ignore[arg-type]
            started.append(p)
            return p

    yield _Factory
    for p in started:
        with contextlib.suppress(Exception):
            p.terminate(timeout=15)
        with contextlib.suppress(Exception):
            p.kill()


@pytest.fixture
async def http_front(tmp_path: Path) -> AsyncIterator[HttpFront]:
    """A started front (plain HTTP; TLS is covered by its own tests) with secret APP_SECRET,
    verify token VERIFY_TOKEN and a 64 KiB body cap."""
    event_log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    deps = build_deps(
        keyring=Keyring([APP_SECRET]),
        event_log=event_log,
        verify_token=VERIFY_TOKEN,
        max_body_bytes=64 * 1024,
    )
    server = make_http_server(deps, None)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    yield HttpFront(f"http://127.0.0.1:{port}", port, event_log, deps, client)
    client.close()
    server.stop()
    await server.close_all_connections()
    await event_log.close()
