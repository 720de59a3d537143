"""A Python gRPC subscriber for the benchmarks, run as its own process pinned to the load core.

Modes (each prints ``READY`` once its group exists, then one JSON object on stdout when done):
  latency  group starts at "latest"; records arrival time - event.received_time for each event
  drain    group starts at "latest"; acks everything, counts it (a live reader for the ingest test)
  catchup  group starts at "earliest"; times how fast ``--count`` stored events arrive (acked)
  stall    group starts at "earliest"; takes one response, then never reads or acks again

Each stops after ``--seconds`` or when its stdin closes, whichever comes first.
Run: ``python -m benchlib.subscriber MODE --target HOST:PORT --group NAME [...]`` from bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from typing import Any

import grpc
from google.protobuf import duration_pb2
from wahook.v1 import service_pb2, service_pb2_grpc


def percentiles_ms(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of seconds, in milliseconds (nearest-rank)."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 3)

    return {"p50": at(50), "p90": at(90), "p99": at(99), "p99.9": at(99.9), "max": at(100)}


async def _wait_group(
    stub: service_pb2_grpc.EventServiceStub, group: str, within: float = 15.0
) -> None:
    """Wait until the server has created the group, so load sent after READY reaches it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            await stub.GetConsumerGroup(
                service_pb2.GetConsumerGroupRequest(consumer_group=group), timeout=2
            )
            return
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                await asyncio.sleep(1.0)
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"group {group} was not created within {within}s")


_ACK_EVERY = 0.01


class _Acks:
    """Acks go out from one task, at most every ``_ACK_EVERY`` seconds, everything
    buffered by then in one request: reading never waits for a write, and a live reader
    getting a small response every few milliseconds sends a fraction of the ack messages
    (each costs both processes a gRPC message and the server a commit)."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.buffer: list[int] = []
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    def add(self, sequences: list[int]) -> None:
        self.buffer += sequences
        self.ready.set()

    async def _run(self) -> None:
        while True:
            await self.ready.wait()
            await asyncio.sleep(_ACK_EVERY)
            self.ready.clear()
            sequences, self.buffer = self.buffer, []
            await self.call.write(service_pb2.SubscribeRequest(ack_sequences=sequences))


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    sys.stdin.read()
    loop.call_soon_threadsafe(stop.set)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # grpc.aio: one thread reads responses and writes acks. The threaded sync API hands
    # every message between three threads; as a drain reader it cost ~5x the CPU.
    channel = grpc.aio.insecure_channel(
        args.target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    stub = service_pb2_grpc.EventServiceStub(channel)
    start = service_pb2.StartPosition()
    if args.mode in ("catchup", "stall"):
        start.earliest = True
    else:
        start.latest = True
    options = service_pb2.SubscribeOptions(
        consumer_group=args.group,
        consumer_name=f"bench-{args.mode}",
        start=start,
        max_in_flight=args.max_in_flight,
        max_batch_size=args.batch,
        ack_deadline=duration_pb2.Duration(seconds=60),
    )
    loop = asyncio.get_running_loop()
    t_open = time.time()
    call = stub.Subscribe()
    await call.write(service_pb2.SubscribeRequest(options=options))
    await _wait_group(stub, args.group)
    print("READY", flush=True)
    t_ready = time.time()
    # Stop after --seconds, or when the orchestrator closes our stdin (more exact than a
    # timer when several subscribers start one after another before the load begins).
    stop = asyncio.Event()
    loop.call_later(args.seconds, stop.set)
    threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
    stopper = asyncio.create_task(stop.wait())
    stopper.add_done_callback(lambda _: call.cancel())
    acks = _Acks(call)

    count = 0
    batches = 0
    latencies: list[float] = []
    t_first = 0.0
    t_done = 0.0
    try:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                break
            arrived = time.time()
            deliveries = response.deliveries
            if not deliveries:
                continue  # heartbeat
            if not t_first:
                t_first = arrived
            batches += 1
            count += len(deliveries)
            sequences = [d.event.sequence for d in deliveries]  # every event parsed
            if args.mode == "latency" and arrived - t_ready >= args.warmup:
                for d in deliveries:
                    rt = d.event.received_time
                    latencies.append(arrived - (rt.seconds + rt.nanos * 1e-9))
            if args.mode == "stall":
                # Keep the stream open but read nothing more: the server must not buffer
                # the backlog for us in memory.
                await stop.wait()
                break
            acks.add(sequences)
            if args.mode == "catchup" and count >= args.count:
                t_done = arrived
                break
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() != grpc.StatusCode.CANCELLED:
            raise
    finally:
        stopper.cancel()
        acks.task.cancel()
        call.cancel()
        await channel.close()

    result: dict[str, Any] = {"mode": args.mode, "group": args.group, "events": count}
    result["batches"] = batches
    result["mean_batch"] = round(count / batches, 1) if batches else 0.0
    if args.mode == "latency":
        result["measured"] = len(latencies)
        result["latency_ms"] = percentiles_ms(latencies)
    if args.mode == "catchup":
        result["complete"] = count >= args.count
        end = t_done or time.time()
        result["seconds_from_open"] = round(end - t_open, 3)
        result["first_batch_s"] = round(t_first - t_open, 3) if t_first else None
        result["events_per_s"] = round(count / (end - t_open), 1) if end > t_open else 0.0
        # Steady delivery rate, without group creation and the first fetch.
        steady = end - t_first if t_first else 0.0
        result["events_per_s_after_first_batch"] = round(count / steady, 1) if steady else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["latency", "drain", "catchup", "stall"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--seconds", type=float, default=10.0, help="stop after this long")
    parser.add_argument("--warmup", type=float, default=0.0, help="latency: ignore the start")
    parser.add_argument("--count", type=int, default=0, help="catchup: events to wait for")
    parser.add_argument("--batch", type=int, default=0, help="max_batch_size (0: server default)")
    parser.add_argument("--max-in-flight", type=int, default=0)
    args = parser.parse_args()
    json.dump(asyncio.run(run(args)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
