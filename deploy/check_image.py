"""`make image-test`: run the wahook image as a pod would and check it from the host.

First the image on its own: read-only, every capability dropped, the image's non-root uid,
its secrets and TLS certificate mounted as files (as a Kubernetes Secret would be), the
event log on a named volume, both ports published on 127.0.0.1 only. Then:

1. /healthz and /readyz answer 200 over verified HTTPS, the GET /webhook challenge is
   echoed for the mounted verify token, and the image's HEALTHCHECK passes;
2. PID 1 is `wahook serve`, running as uid 10001 (read from the host's /proc);
3. a signed `wahook send text` is accepted (200), a wrongly signed one refused (401);
4. the Python example client receives that event over gRPC (with a gRPC token);
5. `podman stop` drains: wahook exits 0 by itself on SIGTERM (a SIGKILL after the
   grace period would read 137);
6. a new container on the same volume keeps the log and the group's position: the
   group's next event is the new one (sequence 2, first attempt), and a new group
   reads both; it drains and exits 0 too;
7. deploy/kubernetes/workload.yaml's pod, run by podman from the manifest (env, args,
   securityContext, mounts; plain HTTP, gRPC on the pod's loopback) on the same volume:
   wahook is ready and passes the HEALTHCHECK, a signed POST is accepted, the example
   worker prints all three events, and both exit 0 on SIGTERM, worker first.
The image's size is printed last.

Real parts only: podman, the image's own wahook and example worker, `wahook send` and
clients/python/subscribe.py from the repository's venv. Waits are on conditions (a
deadline only turns a hang into a failure). Exits 1 at the first failed check, with the
containers' logs.
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

import yaml  # type: ignore[import-untyped]
from wahook.tls import generate_self_signed

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ROOT / "deploy/kubernetes/workload.yaml"
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


class Container:
    """A started container: its state, its log, and a stop that must end in exit code 0."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.what = what

    def state(self) -> dict[str, Any]:
        return dict(json.loads(podman("inspect", "--format", "{{json .State}}", self.name)))

    def logs(self) -> str:
        proc = command(PODMAN, "logs", self.name)
        return proc.stdout + proc.stderr

    def stop(self, run: Run) -> None:
        podman("stop", "--time", str(STOP_GRACE), self.name, timeout=STOP_GRACE + DEADLINE)
        code = self.state()["ExitCode"]
        run.expect(
            code == 0,
            f"podman stop: {self.what} exited 0 on SIGTERM",
            f"exit code {code} (137: killed after {STOP_GRACE}s without exiting)",
        )


class Sidecar(Container):
    """A wahook container and where the host reaches it."""

    def __init__(self, name: str, http_port: int, cacert: Path | None, grpc_target: str) -> None:
        super().__init__(name, "wahook drained and")
        self.http_port = http_port
        self.cacert = cacert  # None: plain HTTP
        self.grpc_target = grpc_target

    @property
    def url(self) -> str:
        return f"{'http' if self.cacert is None else 'https'}://127.0.0.1:{self.http_port}"

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

    def stop(self, run: Run) -> None:
        super().stop(run)
        logs = self.logs()
        run.expect("stopped" in logs, "the log says it drained and stopped")
        run.expect("event loop: uvloop" in logs, "it ran on uvloop (WAHOOK_EVENT_LOOP=auto)")


def published_port(container: str, inside: int) -> int:
    return int(podman("port", container, f"{inside}/tcp").rsplit(":", 1)[1])


def start_sidecar(image: str, name: str, volume: str, secrets_dir: Path) -> Sidecar:
    """The image on its own: HTTPS, gRPC on 0.0.0.0 with a token, both published on
    127.0.0.1, read-only, no capabilities, secrets as files, the log on ``volume``."""
    env = {
        "WAHOOK_APP_SECRET_FILE": "/etc/wahook/app_secret",
        "WAHOOK_VERIFY_TOKEN_FILE": "/etc/wahook/verify_token",
        "WAHOOK_GRPC_TOKEN_FILE": "/etc/wahook/grpc_token",
        "WAHOOK_TLS_CERT": "/etc/wahook/tls.crt",
        "WAHOOK_TLS_KEY": "/etc/wahook/tls.key",
    }
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
    grpc_target = f"127.0.0.1:{published_port(name, 50051)}"
    return Sidecar(name, published_port(name, 8443), secrets_dir / "tls.crt", grpc_target)


def pod_spec() -> dict[str, Any]:
    for doc in yaml.safe_load_all(WORKLOAD.read_text()):
        if doc and doc["kind"] == "StatefulSet":
            return dict(doc["spec"]["template"]["spec"])
    raise CheckFailed(f"{WORKLOAD}: no StatefulSet")


def container_args(
    spec: dict[str, Any], c: dict[str, Any], volume: str, secrets_dir: Path, values: dict[str, str]
) -> list[str]:
    """`podman run` options for one container of the pod spec, as the kubelet would run it:
    its user, securityContext, env (secretKeyRef resolved), mounts, command and args."""
    pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    opts = [
        f"--user={pod_sc['runAsUser']}:{pod_sc.get('runAsGroup', pod_sc['runAsUser'])}",
        "--health-interval=disable",
        "--read-only-tmpfs=false",  # no tmpfs but the pod's emptyDirs, as in Kubernetes
    ]
    if sc.get("readOnlyRootFilesystem"):
        opts.append("--read-only")
    if "ALL" in sc.get("capabilities", {}).get("drop", []):
        opts.append("--cap-drop=ALL")
    if sc.get("allowPrivilegeEscalation") is False:
        opts.append("--security-opt=no-new-privileges")
    for m in c.get("volumeMounts", []):
        source = volumes.get(m["name"], {})
        if "secret" in source:
            opts.append(f"--volume={secrets_dir}:{m['mountPath']}:ro")
        elif "emptyDir" in source:
            opts.append(f"--tmpfs={m['mountPath']}")
        else:  # the StatefulSet's volumeClaimTemplate
            opts.append(f"--volume={volume}:{m['mountPath']}")
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        opts.append(f"--env={e['name']}={values[ref['key']] if ref else e['value']}")
    if "command" in c:
        opts.append(f"--entrypoint={json.dumps(c['command'])}")
    return opts


def start_pod(
    image: str, name: str, volume: str, secrets_dir: Path, values: dict[str, str]
) -> tuple[Sidecar, Container]:
    """deploy/kubernetes/workload.yaml's pod, run by podman with our image: wahook (the
    native sidecar) and the example worker share one network namespace, so the worker
    reaches gRPC on 127.0.0.1; the worker starts once wahook is ready (its startupProbe)."""
    spec = pod_spec()
    sidecar_spec = next(c for c in spec["initContainers"] if c.get("restartPolicy") == "Always")
    worker_spec = spec["containers"][0]
    podman("pod", "create", "--name", name, "--publish", "127.0.0.1::8443")
    sidecar_name = f"{name}-{sidecar_spec['name']}"
    podman(
        "run", "--detach", "--pod", name, "--name", sidecar_name,
        *container_args(spec, sidecar_spec, volume, secrets_dir, values),
        image, *sidecar_spec.get("args", []),
    )  # fmt: skip
    sidecar = Sidecar(sidecar_name, published_port(sidecar_name, 8443), None, "")
    sidecar.wait_ready()
    worker_name = f"{name}-{worker_spec['name']}"
    podman(
        "run", "--detach", "--pod", name, "--name", worker_name,
        *container_args(spec, worker_spec, volume, secrets_dir, values),
        image, *worker_spec.get("args", []),
    )  # fmt: skip
    return sidecar, Container(worker_name, "the example worker")


def wait_for_output(container: Container, text: str) -> str:
    """Until ``text`` shows in the container's log; fails at once if the container exits."""
    end = time.monotonic() + DEADLINE
    while text not in (logs := container.logs()):
        if not container.state()["Running"]:
            raise CheckFailed(f"{container.what} exited: {logs[-2000:]}")
        if time.monotonic() > end:
            raise CheckFailed(f"{text!r} not in the log of {container.what} within {DEADLINE:g}s")
        time.sleep(0.2)
    return logs


def send(sidecar: Sidecar, secret: str) -> subprocess.CompletedProcess[str]:
    trust = ["--cacert", str(sidecar.cacert)] if sidecar.cacert else []
    return command(
        str(BIN / "wahook"), "send", "text", "--to", f"{sidecar.url}/webhook", "--secret", secret,
        *trust,
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
        "graph_access_token": secrets.token_urlsafe(16),  # named by workload.yaml; unused
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


def healthcheck(run: Run, sidecar: Container, what: str) -> None:
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

    first = start_sidecar(image, name, volume, tmp)
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
    podman("rm", first.name)

    second = start_sidecar(image, name, volume, tmp)
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

    sidecar, worker = start_pod(image, f"{name}-pod", volume, tmp, values)
    run.ok("workload.yaml's pod: wahook ready (plain HTTP behind the Ingress, gRPC on loopback)")
    healthcheck(run, sidecar, "the image's HEALTHCHECK passes (plain HTTP)")
    sent = send(sidecar, values["app_secret"])
    run.expect(sent.returncode == 0 and "text: 200" in sent.stdout, "signed POST: 200", sent.stdout)
    out = wait_for_output(worker, '"sequence": 3')
    run.expect(
        [json.loads(line)["sequence"] for line in out.splitlines() if line.startswith("{")]
        == [1, 2, 3],
        "the example worker receives every event over the pod's loopback",
        out,
    )
    worker.stop(run)  # Kubernetes stops the app containers first, then the sidecar
    sidecar.stop(run)


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
        names = command(
            PODMAN, "ps", "--all", "--filter", f"name=^{name}", "--format", "{{.Names}}"
        )
        for container in names.stdout.split():
            logs = command(PODMAN, "logs", "--tail", "40", container)
            print(f"--- {container} (last 40 lines) ---\n{logs.stdout}{logs.stderr}", flush=True)
        print(f"image-test: {run.passed} passed, 1 failed")
        return 1
    finally:
        command(PODMAN, "rm", "--force", name)
        command(PODMAN, "pod", "rm", "--force", f"{name}-pod")
        command(PODMAN, "volume", "rm", "--force", name)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", args.image))
    print(f"image {args.image}: {size / 1e6:.0f} MB")
    print(f"image-test: {run.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
