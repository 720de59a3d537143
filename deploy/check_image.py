"""`make image-test`: run the wahook image as a pod would and check it from the host.

The container runs read-only, with every capability dropped, as the image's non-root
uid, its secrets and TLS certificate mounted as files (as a Kubernetes Secret would be),
the event log on a named volume and both ports published on 127.0.0.1 only. Then:

1. /healthz and /readyz answer 200 over verified HTTPS, the GET /webhook challenge is
   echoed for the mounted verify token, and the image's HEALTHCHECK passes;
2. PID 1 is `wahook serve`, running as uid 10001 (read from the host's /proc);
3. a signed `wahook send text` is accepted (200), a wrongly signed one refused (401);
4. the Python example client receives that event over gRPC (with a gRPC token);
5. `podman stop` drains: wahook exits 0 by itself on SIGTERM (a SIGKILL after the
   grace period would read 137);
6. a new container on the same volume keeps the log and the group's position: the
   group's next event is the new one (sequence 2, first attempt), and a new group
   reads both;
7. that container drains and exits 0 too;
8. a third, run as deploy/kubernetes/workload.yaml runs it (plain HTTP behind the
   Ingress, gRPC on loopback), is ready, passes the HEALTHCHECK and drains.
The image's size is printed last.

Real parts only: podman, the image's own wahook, `wahook send` and
clients/python/subscribe.py from the repository's venv. Waits are on conditions (a
deadline only turns a hang into a failure). Exits 1 at the first failed check, with the
container's log.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wahook.tls import generate_self_signed

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UID = 10001  # the image's user (deploy/Containerfile)
STOP_GRACE = 40  # seconds before podman sends SIGKILL (terminationGracePeriodSeconds too)
DEADLINE = 120.0  # seconds a step may take before it counts as hung (never a speed test)
PODMAN = shutil.which("podman") or "podman"


class CheckFailed(Exception):
    pass


class Run:
    """Counts checks; the first failure ends the run."""

    def __init__(self) -> None:
        self.passed = 0

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"ok {self.passed} - {what}", flush=True)

    def expect(self, cond: bool, what: str, detail: str = "") -> None:
        if not cond:
            raise CheckFailed(what + (f": {detail}" if detail else ""))
        self.ok(what)


def command(
    *argv: str, timeout: float = DEADLINE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a fixed argument list (never a shell), capturing its output as text."""
    return subprocess.run(  # noqa: S603 (our own argv lists; no shell, no outside input)
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def podman(*args: str, check: bool = True, timeout: float = DEADLINE) -> str:
    proc = command(PODMAN, *args, timeout=timeout)
    if check and proc.returncode != 0:
        raise CheckFailed(f"podman {' '.join(args[:2])} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout.strip()


class Sidecar:
    """One container of the image on the shared volume, with its published ports.

    ``tls=False`` runs it as deploy/kubernetes/workload.yaml does: plain HTTP behind a
    TLS-terminating proxy, gRPC on the pod's loopback (so not published).
    """

    def __init__(
        self, image: str, name: str, volume: str, secrets_dir: Path, *, tls: bool = True
    ) -> None:
        self.name = name
        self.cacert = secrets_dir / "tls.crt" if tls else None
        env = {
            "WAHOOK_APP_SECRET_FILE": "/etc/wahook/app_secret",
            "WAHOOK_VERIFY_TOKEN_FILE": "/etc/wahook/verify_token",
            "WAHOOK_GRPC_TOKEN_FILE": "/etc/wahook/grpc_token",
        }
        if tls:
            env |= {
                "WAHOOK_TLS_CERT": "/etc/wahook/tls.crt",
                "WAHOOK_TLS_KEY": "/etc/wahook/tls.key",
            }
        else:
            env |= {"WAHOOK_INSECURE_HTTP": "1", "WAHOOK_GRPC_HOST": "127.0.0.1"}
        podman(
            "run", "--detach", "--name", name,
            "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
            # No systemd timer here: the test runs the HEALTHCHECK itself.
            "--health-interval=disable",
            "--publish", "127.0.0.1::8443", "--publish", "127.0.0.1::50051",
            "--volume", f"{volume}:/var/lib/wahook",
            "--volume", f"{secrets_dir}:/etc/wahook:ro",
            *(f"--env={k}={v}" for k, v in env.items()),
            image,
        )  # fmt: skip
        self.http_port = self._port(8443)
        self.grpc_target = f"127.0.0.1:{self._port(50051)}" if tls else ""

    def _port(self, inside: int) -> int:
        return int(podman("port", self.name, f"{inside}/tcp").rsplit(":", 1)[1])

    def get(self, path: str) -> tuple[int, str]:
        if self.cacert is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        else:
            ctx = ssl.create_default_context(cafile=str(self.cacert))
            conn = http.client.HTTPSConnection("127.0.0.1", self.http_port, timeout=10, context=ctx)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def state(self) -> dict[str, Any]:
        return dict(json.loads(podman("inspect", "--format", "{{json .State}}", self.name)))

    def wait_ready(self) -> None:
        """Until /readyz answers 200; fails at once if the container exits."""
        end = time.monotonic() + DEADLINE
        while True:
            if not self.state()["Running"]:
                raise CheckFailed("the container exited before it was ready")
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass  # not listening yet
            if time.monotonic() > end:
                raise CheckFailed(f"/readyz not 200 within {DEADLINE:g}s")
            time.sleep(0.2)

    def logs(self) -> str:
        proc = command(PODMAN, "logs", self.name)
        return proc.stdout + proc.stderr

    def stop(self, run: Run) -> None:
        podman("stop", "--time", str(STOP_GRACE), self.name, timeout=STOP_GRACE + DEADLINE)
        code = self.state()["ExitCode"]
        run.expect(
            code == 0,
            "podman stop: wahook drained on SIGTERM and exited 0",
            f"exit code {code} (137: killed after {STOP_GRACE}s without exiting)",
        )
        run.expect("stopped" in self.logs(), "the log says it drained and stopped")
        podman("rm", self.name)


def send(sidecar: Sidecar, secret: str) -> subprocess.CompletedProcess[str]:
    return command(
        str(BIN / "wahook"), "send", "text",
        "--to", f"https://127.0.0.1:{sidecar.http_port}/webhook",
        "--cacert", str(sidecar.cacert), "--secret", secret,
    )  # fmt: skip


def subscribe(sidecar: Sidecar, group: str, count: int, grpc_token: str) -> list[dict[str, Any]]:
    """Run the Python example client until it has handled (and acked) ``count`` events."""
    proc = command(
        str(BIN / "python"), str(ROOT / "clients/python/subscribe.py"),
        "--target", sidecar.grpc_target, "--group", group, "--count", str(count),
        env={**os.environ, "WAHOOK_GRPC_TOKEN": grpc_token},
    )  # fmt: skip
    if proc.returncode != 0:
        raise CheckFailed(f"subscribe.py exited {proc.returncode}: {proc.stderr}")
    return [json.loads(line) for line in proc.stdout.splitlines()]


def write_secrets(where: Path) -> dict[str, str]:
    """The files a Kubernetes Secret would mount, readable by the image's uid only."""
    values = {
        "app_secret": secrets.token_hex(16),
        "verify_token": secrets.token_urlsafe(16),
        "grpc_token": secrets.token_urlsafe(24),
    }
    for name, value in values.items():
        (where / name).write_text(value + "\n")
    generate_self_signed(where / "tls.crt", where / "tls.key", hosts=("127.0.0.1",))
    for path in [where, *where.iterdir()]:
        os.chown(path, UID, UID)
        path.chmod(0o500 if path == where else 0o400)
    return values


def probe(run: Run, sidecar: Sidecar, verify_token: str) -> None:
    run.expect(sidecar.get("/healthz")[0] == 200, "/healthz 200 over verified HTTPS")
    run.expect(sidecar.get("/readyz")[0] == 200, "/readyz 200")
    challenge = secrets.token_hex(8)
    answer = sidecar.get(
        f"/webhook?hub.mode=subscribe&hub.verify_token={verify_token}&hub.challenge={challenge}"
    )
    run.expect(answer == (200, challenge), "GET /webhook echoes the challenge", str(answer))
    healthcheck(run, sidecar, "the image's HEALTHCHECK passes (HTTPS)")


def healthcheck(run: Run, sidecar: Sidecar, what: str) -> None:
    health = command(PODMAN, "healthcheck", "run", sidecar.name)
    run.expect(health.returncode == 0, what, health.stdout)


def check_process(run: Run, sidecar: Sidecar) -> None:
    pid = sidecar.state()["Pid"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    run.expect(
        [Path(a.decode()).name for a in cmdline[1:3]] == ["wahook", "serve"],
        "PID 1 of the container is `wahook serve`",
        repr(cmdline),
    )
    uids = next(
        line.split()[1:]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    run.expect(uids == [str(UID)] * 4, f"it runs as uid {UID} (real, effective, saved, fs)")


def scenario(run: Run, image: str, name: str, volume: str, tmp: Path) -> None:
    values = write_secrets(tmp)
    token = values["grpc_token"]

    first = Sidecar(image, name, volume, tmp)
    first.wait_ready()
    probe(run, first, values["verify_token"])
    check_process(run, first)
    sent = send(first, values["app_secret"])
    run.expect(sent.returncode == 0 and "text: 200" in sent.stdout, "signed POST: 200", sent.stdout)
    forged = send(first, "not-the-app-secret")
    run.expect(
        forged.returncode == 1 and "text: 401" in forged.stdout,
        "wrongly signed POST: 401",
        forged.stdout,
    )
    got = subscribe(first, "image-test", 1, token)
    run.expect(
        len(got) == 1 and got[0]["sequence"] == 1 and got[0]["type"] == "message",
        "the Python client receives the message over gRPC (sequence 1) and acks it",
        str(got),
    )
    first.stop(run)

    second = Sidecar(image, name, volume, tmp)
    second.wait_ready()
    run.ok("a new container on the same volume is ready")
    sent = send(second, values["app_secret"])
    run.expect(sent.returncode == 0 and "text: 200" in sent.stdout, "signed POST: 200", sent.stdout)
    got = subscribe(second, "image-test", 1, token)
    run.expect(
        len(got) == 1 and got[0]["sequence"] == 2 and got[0]["attempt"] == 1,
        "the group resumes after its acked event: next is sequence 2, first attempt",
        str(got),
    )
    got = subscribe(second, "image-test-new", 2, token)
    run.expect(
        [e["sequence"] for e in got] == [1, 2],
        "the log kept both events (a new group reads 1 and 2)",
        str(got),
    )
    second.stop(run)

    plain = Sidecar(image, name, volume, tmp, tls=False)
    plain.wait_ready()
    run.ok("as workload.yaml runs it (plain HTTP, gRPC on loopback): /readyz 200")
    healthcheck(run, plain, "the image's HEALTHCHECK passes (plain HTTP)")
    plain.stop(run)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--image", default="localhost/wahook:dev")
    args = p.parse_args()
    name = f"wahook-image-test-{os.getpid()}"
    run = Run()
    podman("volume", "create", name)
    try:
        with tempfile.TemporaryDirectory(prefix="wahook-image-test-") as tmp:
            scenario(run, args.image, name, name, Path(tmp))
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        print(f"not ok {run.passed + 1} - {exc}", flush=True)
        logs = command(PODMAN, "logs", "--tail", "40", name)
        print("--- container log (last 40 lines) ---\n" + logs.stdout + logs.stderr, flush=True)
        print(f"image-test: {run.passed} passed, 1 failed")
        return 1
    finally:
        command(PODMAN, "rm", "--force", name)
        command(PODMAN, "volume", "rm", "--force", name)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", args.image))
    print(f"image {args.image}: {size / 1e6:.0f} MB")
    print(f"image-test: {run.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
