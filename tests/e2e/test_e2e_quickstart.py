"""End to end: the README quick start. `wahook serve --dev`, then `wahook send text` and
`wahook tail --group demo` with no flags beyond the environment a shell would carry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wahook_testkit import WahookFactory, free_port

pytestmark = pytest.mark.e2e


def wahook(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wahook.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dev_server_send_and_tail(tmp_path: Path, wahook_factory: type[WahookFactory]) -> None:
    http_port, grpc_port = free_port(), free_port()
    data = tmp_path / "var"
    server = wahook_factory.start(data, dev=True, http_port=http_port, grpc_port=grpc_port)
    banner = "".join(server.lines)
    assert "app secret:" in banner
    assert server.http_url.startswith("https://127.0.0.1:")
    # The generated secret is printed once, in the banner, and never logged.
    secret = (data / "dev" / "app_secret").read_text().strip()
    assert secret in banner
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHOOK_")}
    env |= {
        "WAHOOK_DATA_DIR": str(data),
        "WAHOOK_HTTP_PORT": str(http_port),
        "WAHOOK_GRPC_PORT": str(grpc_port),
    }

    sent = wahook("send", "text", env=env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("text: 200 ")
    assert json.loads(sent.stdout.split(" ", 2)[2]) == {"received": 1, "new": 1}

    tail = wahook("tail", "--group", "demo", "--count", "1", "--timeout", "30", env=env)
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "EVENT_TYPE_MESSAGE"
    assert event["message"]["text"]["body"] == "Hello from wahook send"

    # It was acked: the group has nothing more, so a timed tail ends empty, with 0.
    again = wahook("tail", "--group", "demo", "--timeout", "1", env=env)
    assert again.returncode == 0
    assert again.stdout == ""
    # Asked for more than came: --idle-exit ends it, and the exit code says it fell short.
    short = wahook("tail", "--group", "demo", "--count", "2", "--idle-exit", "1", env=env)
    assert (short.returncode, short.stdout) == (4, ""), short.stderr
    assert "0 of --count 2 events" in short.stderr

    # Every kind posts; filters select statuses only.
    every = wahook("send", "all", env=env)
    assert every.returncode == 0, every.stdout + every.stderr
    assert every.stdout.count(": 200 ") == every.stdout.count("\n") == 19
    statuses = wahook(
        "tail",
        "--group",
        "statuses",
        "--event-types",
        "status,account_update",
        "--count",
        "4",
        "--timeout",
        "30",
        env=env,
    )
    assert statuses.returncode == 0, statuses.stderr
    assert [json.loads(x)["type"] for x in statuses.stdout.splitlines()] == [
        "EVENT_TYPE_STATUS"
    ] * 4

    assert secret not in server.stderr()


def test_send_without_a_server_fails_with_a_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHOOK_")}
    env |= {"WAHOOK_HTTP_PORT": str(free_port())}
    r = wahook("send", "text", "--secret", "s", "--insecure", env=env)
    assert r.returncode == 1
    assert "cannot post" in r.stderr


def test_serve_without_secret_refuses_and_says_why(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHOOK_")}
    r = wahook("serve", "--data-dir", str(tmp_path), env=env)
    assert r.returncode == 2
    assert "WAHOOK_APP_SECRET" in r.stderr
