"""Shared pieces of the gRPC tests (no tests here): a real SqliteEventLog in tmp_path,
a real grpc.aio server on 127.0.0.1:0, a real channel, and a scripted subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from wahook.rpc.server import RpcHandle, create_server
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import event_pb2, message_pb2, service_pb2, service_pb2_grpc, status_pb2

PHONE_ID = "15550100001"
WABA_ID = "15550100900"


def message(n: int, *, type_name: str = "text") -> event_pb2.Event:
    wamid = f"wamid.RPC{n:06d}"
    return event_pb2.Event(
        id=f"evt_{n:032x}",
        dedupe_key=f"message:{PHONE_ID}:{wamid}",
        type=event_pb2.EVENT_TYPE_MESSAGE,
        received_time={"seconds": 1_700_000_000 + n},
        occurred_time={"seconds": 1_700_000_000 + n},
        waba_id=WABA_ID,
        phone_number_id=PHONE_ID,
        field="messages",
        raw_json='{"id":"' + wamid + '"}',
        message=message_pb2.Message(
            id=wamid, type=message_pb2.MESSAGE_TYPE_TEXT, type_name=type_name
        ),
    )


def status(n: int, message_id: str, state: int, occurred: int) -> event_pb2.Event:
    return event_pb2.Event(
        id=f"evt_{0x7000000 + n:032x}",
        dedupe_key=f"status:{PHONE_ID}:{message_id}:{state}",
        type=event_pb2.EVENT_TYPE_STATUS,
        received_time={"seconds": 1_700_000_000 + n},
        occurred_time={"seconds": occurred},
        waba_id=WABA_ID,
        phone_number_id=PHONE_ID,
        field="messages",
        status=status_pb2.Status(id=message_id, state=state, recipient_id="15550105678"),
    )


@dataclass
class Rpc:
    log: SqliteEventLog
    handle: RpcHandle
    port: int
    channel: grpc.aio.Channel
    stub: Any  # EventServiceStub on an aio channel

    def subscribe(self, **options: Any) -> Subscriber:
        return Subscriber(self.stub, service_pb2.SubscribeOptions(**options))

    async def pending(self, group: str) -> int:
        info = await self.log.group_info(group)
        assert info is not None
        return info.pending_count

    async def wait_pending(self, group: str, count: int, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while await self.pending(group) != count:  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.01)


def record_fetches(rpc: Rpc, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> list[str]:
    """Wrap the log's ``fetch``: the returned list gets each fetch's group, in
    order; ``delay`` seconds are slept before each fetch runs (a slow cycle)."""
    calls: list[str] = []
    real = rpc.log.fetch

    async def recording(group: str, *args: Any) -> Any:
        calls.append(group)
        if delay:
            await asyncio.sleep(delay)
        return await real(group, *args)

    monkeypatch.setattr(rpc.log, "fetch", recording)
    return calls


@asynccontextmanager
async def running(tmp_path: Path, **server_options: Any) -> AsyncIterator[Rpc]:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    server_options.setdefault("heartbeat_interval", 0.2)
    handle = await create_server(log, **server_options)
    port = handle.port
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Rpc(log, handle, port, channel, service_pb2_grpc.EventServiceStub(channel))
    finally:
        await channel.close()
        await handle.shutdown(0.5)
        await log.close()


class Subscriber:
    """One Subscribe stream; requests are queued, responses pumped into a queue by a task
    (cancelling a grpc.aio read would cancel the whole call)."""

    def __init__(self, stub: Any, options: service_pb2.SubscribeOptions | None) -> None:
        self._requests: asyncio.Queue[service_pb2.SubscribeRequest | None] = asyncio.Queue()
        if options is not None:
            self._requests.put_nowait(service_pb2.SubscribeRequest(options=options))
        self.call = stub.Subscribe(self._send())
        self.heartbeats: list[service_pb2.SubscribeResponse] = []
        self.responses: list[service_pb2.SubscribeResponse] = []
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._pump_task = asyncio.create_task(self._pump())

    async def _send(self) -> AsyncIterator[service_pb2.SubscribeRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def _pump(self) -> None:
        try:
            while (response := await self.call.read()) is not grpc.aio.EOF:
                self._inbox.put_nowait(response)
            self._inbox.put_nowait(grpc.aio.EOF)
        except grpc.aio.AioRpcError as error:
            self._inbox.put_nowait(error)
        except asyncio.CancelledError:
            self._inbox.put_nowait(grpc.aio.EOF)

    def send(self, request: service_pb2.SubscribeRequest) -> None:
        self._requests.put_nowait(request)

    def ack(self, sequences: list[int]) -> None:
        self.send(service_pb2.SubscribeRequest(ack_sequences=sequences))

    def nack(self, sequence: int, delay: float = 0.0) -> None:
        nack = service_pb2.Nack(sequence=sequence)
        if delay:
            nack.delay.FromNanoseconds(int(delay * 1e9))
        self.send(service_pb2.SubscribeRequest(nacks=[nack]))

    def half_close(self) -> None:
        self._requests.put_nowait(None)

    async def cancel(self) -> None:
        self.call.cancel()
        await self._pump_task

    async def _next(self, within: float) -> service_pb2.SubscribeResponse:
        async with asyncio.timeout(within):
            item = await self._inbox.get()
        if isinstance(item, grpc.aio.AioRpcError):
            self._inbox.put_nowait(item)
            raise item
        assert item is not grpc.aio.EOF, "stream ended"
        assert isinstance(item, service_pb2.SubscribeResponse)
        return item

    async def batch(self, within: float = 30.0) -> list[service_pb2.Delivery]:
        """The next non-empty response's deliveries (heartbeats are kept aside)."""
        async with asyncio.timeout(within):
            while True:
                response = await self._next(within)
                if response.deliveries:
                    self.responses.append(response)
                    return list(response.deliveries)
                self.heartbeats.append(response)

    async def take(self, n: int, within: float = 30.0) -> list[service_pb2.Delivery]:
        got: list[service_pb2.Delivery] = []
        async with asyncio.timeout(within):
            while len(got) < n:
                got.extend(await self.batch(within))
        return got

    async def confirmation(self, within: float = 30.0) -> service_pb2.LeaseConfirmation:
        """The next response's confirmation (deliveries meanwhile go to ``responses``)."""
        async with asyncio.timeout(within):
            while True:
                response = await self._next(within)
                if response.HasField("confirmation"):
                    return response.confirmation
                if response.deliveries:
                    self.responses.append(response)

    async def nothing_for(self, seconds: float) -> bool:
        """True when no delivery arrives for ``seconds`` (heartbeats allowed)."""
        try:
            await self.batch(seconds)
        except TimeoutError:
            return True
        return False

    async def error(self, within: float = 30.0) -> grpc.aio.AioRpcError:
        """Wait for the stream to end with an error status, and return it."""
        async with asyncio.timeout(within):
            while True:
                item = await self._inbox.get()
                if isinstance(item, grpc.aio.AioRpcError):
                    return item
                assert item is not grpc.aio.EOF, "stream ended with OK"
