"""The parent of `wahook serve --workers N`: starts N front processes and keeps them running.

The parent keeps what must be single (the event log and its one SQLite writer, the gRPC
server, retention, secret reloading, signals: wahook.runtime); the fronts
(wahook.workers.front) serve HTTP(S) on one port with SO_REUSEPORT. Each front is a fresh
interpreter (no fork of a process that has threads) with one end of a socketpair: the
parent sends its serve flags over it, serves the front's appends, /readyz and /metrics
questions on it (wahook.workers.handoff), and a front whose parent is gone sees the socket
end and exits.

The port: the parent first binds it plainly (which fails, with the usual clear error,
when anything holds it, another sidecar's fronts included) and then keeps a bound, never
listening, SO_REUSEPORT socket on it for as long as it runs, so the port (0: a free one)
stays this sidecar's while fronts come and go; a socket that does not listen gets no
connections.

A front that exits while the parent runs is logged and started again (after a pause that
grows while it keeps dying at once). ``stop`` sends every front SIGTERM (each drains:
no new connections, the POSTs in flight answered after their append is durable) and waits
for them; only then may the parent close the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wahook.errors import ConfigError
from wahook.workers.handoff import FrontLink

log = logging.getLogger("wahook.workers")

START_TIMEOUT = 60.0  # every front listening within this, or serve fails
STOP_TIMEOUT = 30.0  # a draining front's time to exit (its drain gives POSTs 20 s) before SIGKILL
QUICK_EXIT = 2.0  # a front that dies this soon after its start counts as crash-looping
MAX_BACKOFF = 10.0


def reserve_port(host: str, port: int) -> socket.socket:
    """The bound (not listening) SO_REUSEPORT socket that holds the fronts' port; see the
    module docstring. ConfigError when the port is taken."""
    family, _, _, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(addr)
            port = probe.getsockname()[1]
        keeper = socket.socket(family, socket.SOCK_STREAM)
        try:
            keeper.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            keeper.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            keeper.bind((addr[0], port, *addr[2:]))
        except BaseException:
            keeper.close()
            raise
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return keeper


@dataclass
class _Slot:
    index: int
    proc: asyncio.subprocess.Process | None = None
    link: FrontLink | None = None
    started: float = 0.0
    pid: int = 0  # the front's, once it said it listens
    listening: asyncio.Future[int] | None = None
    quick_exits: int = 0


class Supervisor:
    """N fronts on ``host:port``. ``make_link(on_hello)`` builds the parent's end of a
    front's channel (the log, /readyz and /metrics it serves); ``spec`` is what the fronts
    get in CONFIG (the serve flags; ``http_port`` is set here to the real port);
    ``event_loop`` the loop they run on (WAHOOK_EVENT_LOOP, as the parent)."""

    def __init__(
        self,
        count: int,
        host: str,
        port: int,
        spec: dict[str, Any],
        make_link: Callable[[Callable[[int], None]], FrontLink],
        *,
        event_loop: str = "auto",
    ) -> None:
        self.count = count
        self.host = host
        self._keeper = reserve_port(host, port)
        self.port: int = self._keeper.getsockname()[1]
        flags = dict(spec.get("flags", {}))
        flags["http_port"] = str(self.port)
        self._spec = json.dumps({**spec, "flags": flags}).encode()
        self._make_link = make_link
        self._event_loop = event_loop
        self._slots = [_Slot(i) for i in range(count)]
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    def alive(self) -> int:
        """Fronts running now."""
        return sum(1 for s in self._slots if s.proc is not None and s.proc.returncode is None)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None]

    async def start(self) -> None:
        """Start every front and wait until each listens; ConfigError (and every front
        stopped) when one exits first."""
        try:
            for slot in self._slots:
                await self._spawn(slot)
            for slot in self._slots:
                await self._wait_listening(slot)
        except BaseException:
            await self.stop()
            raise
        self._watchers = [asyncio.create_task(self._watch(slot)) for slot in self._slots]
        log.info(
            "%d workers listening on port %d: pids %s",
            self.count,
            self.port,
            " ".join(str(p) for p in self.pids()),
        )

    async def _wait_listening(self, slot: _Slot) -> None:
        assert slot.listening is not None
        assert slot.proc is not None
        exited = asyncio.ensure_future(slot.proc.wait())
        await asyncio.wait(
            [slot.listening, exited], timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        exited.cancel()
        if not slot.listening.done():
            raise ConfigError(
                f"worker {slot.index} did not start (exit code "
                f"{slot.proc.returncode}); its log lines are above"
            )

    async def _spawn(self, slot: _Slot) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        loop = asyncio.get_running_loop()
        slot.listening = loop.create_future()
        listening = slot.listening

        def on_hello(pid: int) -> None:
            slot.pid = pid
            if not listening.done():
                listening.set_result(pid)

        try:
            slot.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wahook.workers.front",
                "--fd",
                str(child_end.fileno()),
                "--index",
                str(slot.index),
                "--event-loop",
                self._event_loop,
                pass_fds=[child_end.fileno()],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sys.stderr.fileno(),  # stdout is the parent's (the listening line)
            )
        finally:
            child_end.close()
        slot.started = time.monotonic()
        link = self._make_link(on_hello)
        await link.connect(parent_end)
        link.send_config(self._spec)
        slot.link = link

    async def _watch(self, slot: _Slot) -> None:
        """Start ``slot``'s front again whenever it exits, until ``stop``."""
        while True:
            assert slot.proc is not None
            code = await slot.proc.wait()
            if slot.link is not None:
                slot.link.close()
            if self._stopping:
                return
            lived = time.monotonic() - slot.started
            slot.quick_exits = slot.quick_exits + 1 if lived < QUICK_EXIT else 0
            pause = min(MAX_BACKOFF, 0.1 * 2**slot.quick_exits) if slot.quick_exits else 0.0
            log.warning(
                "worker %d (pid %d) exited with %s; starting it again%s",
                slot.index,
                slot.proc.pid,
                _how(code),
                f" in {pause:g}s" if pause else "",
            )
            if pause:
                await asyncio.sleep(pause)
            if self._stopping:
                return
            self.restarts += 1
            await self._spawn(slot)
            log.info("worker %d started again: pid %d", slot.index, slot.proc.pid)

    def signal_all(self, sig: int) -> None:
        for slot in self._slots:
            if slot.proc is not None and slot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)

    async def stop(self) -> None:
        """SIGTERM every front, wait for each to drain and exit (SIGKILL after
        STOP_TIMEOUT), then release the port."""
        self._stopping = True
        for task in self._watchers:  # no front is started again from here on
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.signal_all(signal.SIGTERM)
        for slot in self._slots:
            if slot.proc is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.proc.wait(), STOP_TIMEOUT)
            if slot.proc.returncode is None:
                log.error("worker %d did not stop in %gs: killed", slot.index, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.kill()
                await slot.proc.wait()
            if slot.link is not None:
                slot.link.close()
        self._keeper.close()


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
