"""A real redis-server for the tests of the Redis Streams event log (no mocks: see
docs/architecture.md, Code habits).

``start_redis`` runs one on 127.0.0.1, a free port and a temporary directory, with the
durable settings wahook documents (AOF, fsync on every write). The Makefile's ``test``
target installs redis-server when it is missing; when it still cannot be found the Redis
tests fail saying so, they are never skipped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    password: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def crash(self) -> None:
        """SIGKILL: no shutdown, no final save; what is on disk is what the AOF has."""
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """The same server again (same port, directory and settings) after ``crash``."""
        self.process = subprocess.Popen(
            self.process.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.02)
        pytest.fail("redis-server did not come back", pytrace=False)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: Path, *, password: str | None = None) -> RedisServer:
    """A redis-server in ``directory`` (with ``password`` required, when given); fails the
    test (not skips) when there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: `make test` installs it (apt-get install -y"
            " redis-server); the Redis Streams event log's tests need a real server",
            pytrace=False,
        )
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        port = _free_port()
        args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        if password is not None:
            args += ["--requirepass", password]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RedisServer(port, process, password)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if server.client().ping():
                    return server
            except redis.ConnectionError:
                time.sleep(0.02)
        server.stop()  # the port was taken meanwhile, or it did not come up: again
    pytest.fail("redis-server did not start", pytrace=False)
