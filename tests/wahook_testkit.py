"""Shared test helpers: free ports, signing, certificates, `wahook serve` subprocesses, the front.

``start_wahook(tmp_path, ...)`` (the ``wahook_factory`` fixture) starts a real sidecar
process on free ports with real TLS and returns a ``WahookProcess`` that knows its URLs,
secret and data directory, and stops it (SIGTERM, then SIGKILL) at teardown.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tornado.httpclient
import tornado.netutil
from wahook import tls
from wahook.http.handlers import WebhookDeps
from wahook.store.sqlite import SqliteEventLog

APP_SECRET = "test-app-secret-1555010"
VERIFY_TOKEN = "test-verify-token"
LISTENING = re.compile(r"wahook: listening http=(\S+) grpc=(\S+)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers that must keep a port across
    restarts; otherwise bind port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    """X-Hub-Signature-256 as Meta computes it (independent of wahook.core)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Certs:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return tls.client_context(self.cert)


@dataclass
class WahookProcess:
    """A running `wahook serve` subprocess."""

    proc: subprocess.Popen[str]
    data_dir: Path
    http_url: str
    grpc_target: str
    stderr_path: Path
    secret: str = APP_SECRET
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def webhook_url(self) -> str:
        return self.http_url + "/webhook"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close_pipe()
        return code

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.pump is not None:
            self.pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _pump(stream: object, q: queue.Queue[str | None], lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)
        q.put(line)
    q.put(None)


def start_wahook(
    data_dir: Path,
    certs: Certs | None,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    http_port: int = 0,
    grpc_port: int = 0,
    secret: str = APP_SECRET,
    startup_timeout: float = 30.0,
    dev: bool = False,
    preexec_fn: Callable[[], object] | None = None,
) -> WahookProcess:
    """Start `python -m wahook.cli serve` and wait for its listening line.

    ``dev`` runs `serve --dev` with no secret, token or certificate in the environment,
    as a newcomer would; ``secret`` is then read from what it generated."""
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WAHOOK_")}
    if not dev:
        full_env["WAHOOK_APP_SECRET"] = secret
        full_env["WAHOOK_VERIFY_TOKEN"] = VERIFY_TOKEN
    else:
        args = ["--dev", *args]
        certs = None
    full_env.update(
        {
            "WAHOOK_DATA_DIR": str(data_dir),
            "WAHOOK_HTTP_PORT": str(http_port),
            "WAHOOK_GRPC_PORT": str(grpc_port),
            "WAHOOK_HTTP_HOST": "127.0.0.1",
            "WAHOOK_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if certs is not None:
        full_env["WAHOOK_TLS_CERT"] = str(certs.cert)
        full_env["WAHOOK_TLS_KEY"] = str(certs.key)
    full_env.update(env or {})
    stderr_path = data_dir / f"stderr-{time.monotonic_ns()}.log"
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wahook.cli", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=full_env,
            preexec_fn=preexec_fn,  # noqa: PLW1509 (tests: e.g. a lower descriptor limit)
        )
    lines: list[str] = []
    q: queue.Queue[str | None] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(proc.stdout, q, lines), daemon=True)
    pump.start()
    deadline = time.monotonic() + startup_timeout
    while True:
        try:
            line = q.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            proc.wait(10)
            pump.join(5)
            proc.stdout.close()  # type: ignore[union-attr]
            raise AssertionError(
                f"wahook serve did not start in {startup_timeout}s:\n{stderr_path.read_text()}"
            ) from None
        if line is None:
            proc.wait(10)
            pump.join(5)
            proc.stdout.close()  # type: ignore[union-attr]
            raise AssertionError(
                f"wahook serve exited {proc.returncode}:\n{''.join(lines)}\n"
                f"{stderr_path.read_text()}"
            )
        m = LISTENING.search(line)
        if m and dev:
            secret = (data_dir / "dev" / "app_secret").read_text().strip()
        if m:
            return WahookProcess(
                proc, data_dir, m.group(1), m.group(2), stderr_path, secret, lines, pump
            )


class WahookFactory:
    """Type of the ``wahook_factory`` fixture."""

    @staticmethod
    def start(data_dir: Path, **kwargs: object) -> WahookProcess:
        raise NotImplementedError


@dataclass
class HttpFront:
    """The webhook front on 127.0.0.1:0 in the test's own loop, around a real SqliteEventLog."""

    url: str
    port: int
    event_log: SqliteEventLog
    deps: WebhookDeps
    client: tornado.httpclient.AsyncHTTPClient

    async def fetch(
        self,
        path: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tornado.httpclient.HTTPResponse:
        return await self.client.fetch(
            self.url + path,
            method=method,
            body=body,
            headers=headers,
            raise_error=False,
            allow_nonstandard_methods=True,
        )

    async def post_webhook(
        self, body: bytes, signature: str | None = "sign"
    ) -> tornado.httpclient.HTTPResponse:
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            headers["X-Hub-Signature-256"] = sign(body)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return await self.fetch("/webhook", "POST", body, headers)
