"""The allow-list of numbers: an event for another number is stored, marked misrouted,
counted, and logged once per number."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.netutil
from wahook import samples
from wahook.core.signature import Keyring
from wahook.http.app import build_deps, make_http_server
from wahook.store.base import EventFilter
from wahook.store.sqlite import SqliteEventLog
from wahook_testkit import APP_SECRET, sign


@pytest.mark.parametrize(
    ("phones", "wabas", "misrouted"),
    [
        ({samples.PHONE_NUMBER_ID}, set(), False),
        ({"1555010999"}, set(), True),
        (set(), {samples.WABA_ID}, False),
        (set(), {"1555010888"}, True),
    ],
)
async def test_events_of_numbers_off_the_list_are_stored_marked_and_counted(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    phones: set[str],
    wabas: set[str],
    misrouted: bool,
) -> None:
    event_log = await SqliteEventLog.open(tmp_path / "e.sqlite3")
    deps = build_deps(
        keyring=Keyring([APP_SECRET]),
        event_log=event_log,
        verify_token=None,
        allowed_phone_number_ids=frozenset(phones),
        allowed_waba_ids=frozenset(wabas),
    )
    server = make_http_server(deps, None)
    socks = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(socks)
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    caplog.set_level(logging.WARNING, logger="wahook.http")
    try:
        for _ in range(2):
            body = samples.body("text")
            r = await client.fetch(
                f"http://127.0.0.1:{socks[0].getsockname()[1]}/webhook",
                method="POST",
                body=body,
                headers={"X-Hub-Signature-256": sign(body)},
            )
            assert r.code == 200  # stored either way: nothing is lost
        stored = await event_log.list_events(EventFilter(), 0, 0, 10)
        assert len(stored) == 2
        assert [e.misrouted for e in stored] == [misrouted, misrouted]
        assert deps.metrics.misrouted_events == (2 if misrouted else 0)
        assert f"wahook_misrouted_events_total {2 if misrouted else 0}" in deps.metrics.render()
        warned = [r for r in caplog.records if "allow-list" in r.getMessage()]
        assert len(warned) == (1 if misrouted else 0)  # once per number, not per event
    finally:
        client.close()
        server.stop()
        await event_log.close()
