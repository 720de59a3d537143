"""What both EventLog backends share around appends: the checks an append makes before
anything is queued, and the head sequence that ``wait_for_append`` waits on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from wahook.errors import InvalidArgumentError
from wahook.v1 import event_pb2


def check_appendable(events: Sequence[event_pb2.Event]) -> None:
    """InvalidArgumentError naming the first event without a dedupe key or an id."""
    for i, event in enumerate(events):
        if not event.dedupe_key:
            raise InvalidArgumentError(f"events[{i}].dedupe_key is empty")
        if not event.id:
            raise InvalidArgumentError(f"events[{i}].id is empty")


class HeadWatch:
    """The newest sequence this process knows to be stored, and waiting for it to pass one.

    One Event per head value, replaced when the head moves: a waiter woken by a move it
    does not care about waits on the new Event, and ``close`` wakes them all for good.
    """

    def __init__(self, head: int = 0) -> None:
        self.head = head
        self._changed = asyncio.Event()

    def advance(self, head: int) -> None:
        """The log's head is at least ``head`` now; wakes the waiters if that is news."""
        if head > self.head:
            self.head = head
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    def close(self) -> None:
        """Wake every waiter, now and later: they look at ``closed`` and give up."""
        self._changed.set()

    async def wait_past(
        self,
        after: int,
        timeout: float,  # noqa: ASYNC109 - the EventLog protocol's signature
        *,
        closed: Callable[[], bool],
        before_wait: Callable[[], None] | None = None,
    ) -> bool:
        """True once the head passes ``after``, False after ``timeout`` seconds or once
        ``closed()``; ``before_wait`` runs before each wait (a backend starts a watcher)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.head <= after:
            remaining = deadline - loop.time()
            if remaining <= 0 or closed():
                return False
            if before_wait is not None:
                before_wait()
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return self.head > after
        return True
