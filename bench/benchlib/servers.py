"""Servers under test as real processes pinned to the server core: the baselines (Tornado, pywa,
Express, the do-nothing Go floor) and `wahook serve`.

wahook runs with plain HTTP (``WAHOOK_INSECURE_HTTP=1``) like the baselines, so that TLS cost,
which is the same for every receiver, does not dominate the comparison.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib.tools import (
    BENCH,
    EXPRESS_DIR,
    PYWA_DIR,
    REPO,
    SERVER_CORE,
    ensure_express,
    ensure_floor,
    ensure_pywa,
    ensure_pywa_async,
    ensure_uvloop,
    pinned,
)

BASELINES = {
    "bare": BENCH / "baselines" / "bare_tornado.py",
    "hmac_json": BENCH / "baselines" / "hmac_json_tornado.py",
    "bare_delegate": BENCH / "baselines" / "bare_tornado_delegate.py",
}


# Put before every server's argv (after the core pinning), e.g. valgrind for
# bench/bench_post_cost.py --callgrind; empty for every suite of run.py.
SPAWN_PREFIX: list[str] = []
# How long a server may take to answer its first request (valgrind slows start-up ~40x).
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wahook_bin() -> Path:
    return Path(sys.executable).parent / "wahook"


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


@dataclass
class Server:
    """A running server process; ``url`` is its POST /webhook address."""

    name: str
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int = 0
    data_dir: Path | None = None
    log_path: Path | None = None
    scheme: str = "http"
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}/webhook"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def rss_mib(self) -> float:
        """Resident size of the server and any children it started, in MiB."""
        pids = [self.proc.pid]
        for pid in pids:
            pids += _children(pid)
        return sum(_rss_kib(p) for p in pids) / 1024

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (wahook drains), then SIGKILL if it does not exit within 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _wait_ready(server: Server, path: str, timeout: float | None = None) -> None:
    timeout = READY_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            conn: http.client.HTTPConnection
            if server.scheme == "https":
                # Our own throwaway self-signed certificate: nothing to verify it against.
                unverified = ssl._create_unverified_context()
                conn = http.client.HTTPSConnection(
                    "127.0.0.1", server.http_port, timeout=2, context=unverified
                )
            else:
                conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            # Baselines answer 405 to GET /webhook: that still proves they serve.
            if status < 500:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{server.name} not ready after {timeout}s ({last}):\n{server.log_tail()}")


def _spawn(
    name: str, argv: list[str], env: dict[str, str], log_dir: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            pinned(SERVER_CORE, [*SPAWN_PREFIX, *argv]),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    return proc, log_path


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with wahook's own helper."""
    from wahook.tls import generate_self_signed  # noqa: PLC0415

    cert, key = directory / "bench-cert.pem", directory / "bench-key.pem"
    if not (cert.exists() and key.exists()):
        generate_self_signed(cert, key)
    return cert, key


def start_baseline(
    kind: str, secret: str, log_dir: Path, tls: tuple[Path, Path] | None = None
) -> Server:
    """A baseline on a free port: Tornado ("bare", "bare_uvloop", "bare_delegate",
    "hmac_json"), "pywa" (pywa's sync client), "pywa_async" (pywa's async client on uvicorn,
    uvloop and httptools), "express" (Node) or "floor" (Go net/http, no work: the floor of
    this machine and load tool)."""
    port = free_port()
    env = dict(os.environ)
    if kind == "express":
        env["NODE_PATH"] = str(ensure_express())
        argv = ["node", str(EXPRESS_DIR / "server.js")]
    elif kind == "pywa":
        argv = [str(ensure_pywa()), str(PYWA_DIR / "receiver.py")]
    elif kind == "pywa_async":
        argv = [str(ensure_pywa_async()), str(PYWA_DIR / "receiver.py"), "--async"]
    elif kind == "floor":
        argv = [str(ensure_floor())]
    elif kind == "bare_uvloop":
        argv = [str(ensure_uvloop()), str(BASELINES["bare"]), "--uvloop"]
    else:
        argv = [sys.executable, str(BASELINES[kind])]
    argv += ["--port", str(port), "--secret", secret]
    if tls is not None:
        if kind != "bare":
            raise ValueError("only the bare baseline serves HTTPS")
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    proc, log_path = _spawn(kind, argv, env, log_dir)
    scheme = "https" if tls else "http"
    server = Server(name=kind, proc=proc, http_port=port, log_path=log_path, scheme=scheme)
    _wait_ready(server, "/webhook")
    return server


def start_wahook(
    secret: str,
    log_dir: Path,
    tls: tuple[Path, Path] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """`wahook serve` on free ports, SQLite in a fresh data directory; plain HTTP unless ``tls``
    (certificate, key) is given."""
    tmp = tempfile.TemporaryDirectory(prefix="wahook-bench-")
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "WAHOOK_APP_SECRET": secret,
        "WAHOOK_VERIFY_TOKEN": "bench-verify-token",
        "WAHOOK_HTTP_HOST": "127.0.0.1",
        "WAHOOK_HTTP_PORT": str(http_port),
        "WAHOOK_GRPC_PORT": str(grpc_port),
        "WAHOOK_GRPC_HOST": "127.0.0.1",
        "WAHOOK_DATA_DIR": tmp.name,
        "WAHOOK_INSECURE_HTTP": "0" if tls else "1",
        **(extra_env or {}),
    }
    if tls is not None:
        env["WAHOOK_TLS_CERT"], env["WAHOOK_TLS_KEY"] = str(tls[0]), str(tls[1])
    proc, log_path = _spawn("wahook", [str(wahook_bin()), "serve"], env, log_dir)
    server = Server(
        name="wahook",
        proc=proc,
        http_port=http_port,
        grpc_port=grpc_port,
        data_dir=Path(tmp.name),
        log_path=log_path,
        scheme="https" if tls else "http",
        _tmp=tmp,
    )
    _wait_ready(server, "/readyz")
    return server


def start(kind: str, secret: str, log_dir: Path, tls: tuple[Path, Path] | None = None) -> Server:
    if kind == "wahook":
        return start_wahook(secret, log_dir, tls)
    if kind == "wahook_access_all":
        # What-if: an access log line for every request (the default logs refusals only).
        return start_wahook(secret, log_dir, tls, {"WAHOOK_ACCESS_LOG": "all"})
    if kind == "wahook_ref":
        # Another checkout's wahook (WAHOOK_BENCH_REF: its server/ directory, generated code
        # included) in this venv: a before/after of a change, e.g. --pair wahook_ref,wahook.
        ref = os.environ.get("WAHOOK_BENCH_REF")
        if not ref or not (Path(ref) / "wahook" / "v1").is_dir():
            raise RuntimeError("wahook_ref: set WAHOOK_BENCH_REF to a checkout's server/ directory")
        return start_wahook(secret, log_dir, tls, {"PYTHONPATH": ref})
    if kind == "wahook_asyncio":
        # What-if: asyncio's own event loop instead of uvloop (the default where installed).
        return start_wahook(secret, log_dir, tls, {"WAHOOK_EVENT_LOOP": "asyncio"})
    return start_baseline(kind, secret, log_dir, tls)


def wahook_available() -> bool:
    """True when `wahook serve` exists (the sidecar has landed)."""
    try:
        proc = subprocess.run(
            [str(wahook_bin()), "serve", "--help"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
