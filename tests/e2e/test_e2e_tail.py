"""End to end: `wahook tail` stops cleanly on SIGTERM (exit 0, the acks of what it printed
sent, its temporary group deleted), also as the PID 1 of its own PID namespace, as in a
container, where the kernel ignores a signal the process has no handler for."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from e2e_helpers import post
from wahook import samples
from wahook.v1 import service_pb2, service_pb2_grpc
from wahook_testkit import Certs, WahookFactory, WahookProcess

pytestmark = pytest.mark.e2e

# Runs the command as PID 1 of a new PID namespace (a user namespace makes that possible
# without root); --kill-child takes it down should the test kill unshare.
PID_NAMESPACE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"]
HANG_BOUND = 60.0


class Tail:
    """A running `wahook tail`, its stdout read line by line on a thread."""

    def __init__(self, argv: Sequence[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAHOOK_")}
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def lines(self, count: int) -> list[str]:
        got = []
        for _ in range(count):
            line = self._lines.get(timeout=HANG_BOUND)
            assert line is not None, f"tail ended after {got}: {self.stderr()}"
            got.append(line)
        return got

    def rest(self) -> list[str]:
        """What it printed after ``lines`` took its share, once it has ended."""
        self._reader.join(HANG_BOUND)
        rest = []
        while (line := self._lines.get_nowait()) is not None:
            rest.append(line)
        return rest

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


@contextmanager
def tail(argv: Sequence[str]) -> Iterator[Tail]:
    t = Tail(argv)
    try:
        yield t
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
        t.proc.wait(HANG_BOUND)
        for pipe in (t.proc.stdout, t.proc.stderr):
            if pipe is not None:
                pipe.close()


def tail_argv(sidecar: WahookProcess, *args: str) -> list[str]:
    return [sys.executable, "-m", "wahook.cli", "tail", "--target", sidecar.grpc_target, *args]


def post_three(sidecar: WahookProcess, certs: Certs) -> None:
    for n in range(3):
        body = samples.body("text", message_id=f"wamid.SIGTERM{n:04d}")
        assert post(sidecar.webhook_url, body, certs.client_context())[0] == 200


def sequences(lines: list[str]) -> list[int]:
    return [int(json.loads(line)["sequence"]) for line in lines]


async def group_state(target: str) -> dict[str, service_pb2.ConsumerGroup]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        listed = await stub.ListConsumerGroups(service_pb2.ListConsumerGroupsRequest())
    return {g.name: g for g in listed.groups}


async def test_tail_stops_on_sigterm_with_its_acks_sent(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    sidecar = wahook_factory.start(tmp_path / "w")
    post_three(sidecar, certs)
    with tail(tail_argv(sidecar, "--group", "ops")) as t:
        assert sequences(t.lines(3)) == [1, 2, 3]
        t.proc.send_signal(signal.SIGTERM)
        # Not killed by the signal (-15): stopped, as at the end of --count.
        assert t.proc.wait(HANG_BOUND) == 0, t.stderr()
        assert t.rest() == []
    [ops] = (await group_state(sidecar.grpc_target)).values()
    # Every printed event was acked before the stream ended: none pending, none again.
    assert (ops.name, ops.delivered_sequence, ops.pending_count) == ("ops", 3, 0)


def _pid_namespace_or_skip() -> None:
    try:
        probe = subprocess.run(
            [*PID_NAMESPACE, "true"],
            capture_output=True,
            text=True,
            timeout=HANG_BOUND,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("unshare (util-linux) is not installed: cannot run tail as a PID 1")
    if probe.returncode != 0:
        pytest.skip(f"no PID namespace here ({probe.stderr.strip()}): cannot run tail as a PID 1")


def _only_child(pid: int) -> int:
    [child] = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


def _pid_in_its_namespace(pid: int) -> int:
    """The process's PID as its own PID namespace numbers it (the last of NSpid)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("NSpid:")[1].split("\n")[0].split()[-1])


async def test_tail_as_pid_1_stops_on_sigterm_and_deletes_its_group(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    _pid_namespace_or_skip()
    sidecar = wahook_factory.start(tmp_path / "w")
    post_three(sidecar, certs)
    with tail([*PID_NAMESPACE, *tail_argv(sidecar)]) as t:
        assert sequences(t.lines(3)) == [1, 2, 3]
        # unshare's child is the tail; in its own namespace it is PID 1.
        pid = _only_child(t.proc.pid)
        assert _pid_in_its_namespace(pid) == 1
        os.kill(pid, signal.SIGTERM)
        # Without a handler the signal would be ignored and the wait time out.
        assert t.proc.wait(HANG_BOUND) == 0, t.stderr()
        assert t.rest() == []
    # Its temporary group was deleted on the way out, acks and all.
    assert await group_state(sidecar.grpc_target) == {}
