"""The gRPC server factory: EventService, grpc.health.v1 and server reflection on one
grpc.aio server, plus the handle that shuts it down in order.

Shutdown order (RpcHandle.shutdown): health goes NOT_SERVING (load balancers and
readiness probes stop sending new work), every Subscribe stream ends with UNAVAILABLE
after releasing its unacked events (subscribers reconnect elsewhere or after restart,
and get them again), then the server stops, giving unary calls ``grace`` seconds. The
EventLog stays open: its owner closes it after this returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from wahook.media import MediaClient
from wahook.rpc.auth import Gate, TokenSet
from wahook.rpc.servicer import SERVICE_NAME, EventService
from wahook.rpc.subscribe import DeliveryStats, Hub
from wahook.store.base import EventLog

_log = logging.getLogger(__name__)

# Server reflection v1, what current clients (grpcurl, grpcui, tonic's) ask for first,
# beside v1alpha, the only one grpcio-reflection ships: v1 is v1alpha's messages under a
# new package name, and the wire format carries no names, so one servicer answers both.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _reflection_handlers(services: tuple[str, ...]) -> tuple[grpc.GenericRpcHandler, ...]:
    """Server reflection (v1 and v1alpha) listing ``services`` and itself."""
    names = (*services, REFLECTION_V1, reflection.SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    return tuple(
        grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": method})
        for name in (REFLECTION_V1, reflection.SERVICE_NAME)
    )


# A response stays under the default 4 MiB a client accepts, with room for framing.
DEFAULT_MAX_RESPONSE_BYTES = 3 * 1024 * 1024
# A stream fetches on appends at most once per this many seconds: under heavy ingest the
# appends of several commits then share one fetch and one ack (readers tax ingest less);
# an append after a quiet spell is still fetched at once. Longer measured no gain; under
# overload the pacing in wahook.rpc.subscribe spaces fetches out (figures:
# docs/decisions/0016-fetch-linger-and-pacing.md).
DEFAULT_FETCH_LINGER = 0.002


@dataclass
class RpcHandle:
    """What the runtime keeps of a running gRPC server."""

    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health.v1.health.aio.HealthServicer (untyped upstream)
    hub: Hub
    gate: Gate

    def connected_subscribers(self) -> int:
        """Open Subscribe streams, for /metrics."""
        return self.hub.total()

    def delivery_stats(self) -> DeliveryStats:
        """Delivery counters since start (live object), for /metrics."""
        return self.hub.stats

    async def shutdown(self, grace: float = 5.0) -> None:
        """NOT_SERVING, end Subscribe streams cleanly, then stop; see the module docstring."""
        await self.health.enter_graceful_shutdown()
        await self.hub.close(grace)
        await self.server.stop(grace)


class _QuietCancelledWrites(logging.Filter):
    """grpc logs an ERROR with a traceback when a servicer's write fails because the
    client already went away (cancelled, disconnected): once per Subscribe a client
    cancels. That is a client leaving, not a server error: it goes to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.getMessage().startswith(
            "ExecuteBatchError raised in core by servicer method"
        ):
            _log.debug("%s (the client went away)", record.getMessage())
            return False
        return True


_QUIET = _QuietCancelledWrites()


async def create_server(
    log: EventLog,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    heartbeat_interval: float = 5.0,
    credentials: grpc.ServerCredentials | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    fetch_linger: float = DEFAULT_FETCH_LINGER,
    options: Sequence[tuple[str, Any]] = (),
    clock: Callable[[], float] = time.time,
    media: MediaClient | None = None,
    tokens: TokenSet | None = None,
    max_streams: int = 0,
    stream_max_bytes: int = 0,
) -> RpcHandle:
    """Build, bind and start the gRPC server on the running loop; its handle.

    ``port`` 0 picks a free port; the handle has the bound one. ``credentials`` serves TLS
    (plain text otherwise). ``clock`` gives the wall-clock time used for ack deadlines.
    ``fetch_linger``: least seconds between two append-driven fetches of one stream.
    ``media`` serves DownloadMedia (None: it answers FAILED_PRECONDITION); its owner
    closes it. ``tokens``: the bearer tokens every call but health must carry (none: no
    token asked); ``max_streams``: open Subscribe streams at most (0: no cap);
    ``stream_max_bytes``: event bytes a stream may have sent unacked (0: no bound).
    Health reports SERVING for "" and "wahook.v1.EventService" once this returns.
    """
    gate = Gate(
        tokens or TokenSet(),
        max_streams=max_streams,
        counted=frozenset({f"/{SERVICE_NAME}/Subscribe"}),
    )
    logging.getLogger("grpc._cython.cygrpc").addFilter(_QUIET)  # once: filters are a set
    server = grpc.aio.server(options=list(options), interceptors=[gate])
    hub = Hub(clock)
    service = EventService(
        log,
        hub,
        clock=clock,
        heartbeat_interval=heartbeat_interval,
        max_response_bytes=max_response_bytes,
        fetch_linger=fetch_linger,
        media=media,
        stream_max_bytes=stream_max_bytes,
    )
    server.add_generic_rpc_handlers((service.handler(),))
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_generic_rpc_handlers(
        _reflection_handlers(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        )
    )
    address = f"{host}:{port}"
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RpcHandle(server=server, port=bound, health=health, hub=hub, gate=gate)
