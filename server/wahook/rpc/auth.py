"""The gRPC server's gate: bearer tokens on every call but health, and a cap on streams.

``Gate`` is a grpc.aio server interceptor. With tokens configured (WAHOOK_GRPC_TOKEN),
every call except grpc.health.v1 (probes carry no credentials) must send
``authorization: Bearer <token>`` matching one of them, compared in constant time;
otherwise it ends UNAUTHENTICATED before the servicer runs. Several tokens are accepted
at once so a client can move to a new one before the old is withdrawn; ``TokenSet.replace``
swaps them in place (SIGHUP, a changed WAHOOK_GRPC_TOKEN_FILE).

Client certificates (mutual TLS) are checked by gRPC itself when the server's
credentials require them (``tls.grpc_server_credentials``): a call without a trusted
certificate never reaches this interceptor.

Subscribe streams are counted here, from the call's start to its end, so a cap
(WAHOOK_GRPC_MAX_STREAMS) holds even for streams that never send their options: the
stream past the cap ends RESOURCE_EXHAUSTED at once.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"


class TokenSet:
    """The accepted bearer tokens (empty: no token required)."""

    def __init__(self, tokens: Sequence[str] = ()) -> None:
        self._tokens: tuple[bytes, ...] = ()
        self.replace(tokens)

    def replace(self, tokens: Sequence[str]) -> None:
        self._tokens = tuple(t.encode() for t in tokens if t)

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``authorization`` metadata value carries an accepted token."""
        if authorization is None or not authorization.startswith("Bearer "):
            return False
        given = authorization.removeprefix("Bearer ").strip().encode()
        ok = False
        for token in self._tokens:  # every one compared: the time says nothing of which
            ok |= hmac.compare_digest(given, token)
        return ok


def _metadata(details: grpc.HandlerCallDetails, key: str) -> str | None:
    for name, value in details.invocation_metadata or ():
        if name == key:
            return str(value)
    return None


def _refusing(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of ``handler``'s kind that ends the call with ``code``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make: Any = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(  # type: ignore[no-any-return]
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class Gate(grpc.aio.ServerInterceptor):
    """Authentication and the stream cap (see the module docstring)."""

    def __init__(
        self, tokens: TokenSet, *, max_streams: int = 0, counted: frozenset[str] = frozenset()
    ) -> None:
        self.tokens = tokens
        self.max_streams = max_streams  # 0: no cap
        self.counted = counted  # full method names whose streams the cap counts
        self.streams = 0
        self.refused = 0  # calls refused for their credentials

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        if self.tokens.required and not self.tokens.accepts(_metadata(details, "authorization")):
            self.refused += 1
            return _refusing(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong bearer token (send 'authorization: Bearer <WAHOOK_GRPC_TOKEN>')",
            )
        if method in self.counted and handler.stream_stream is not None:
            return self._counting(handler)
        return handler

    def _counting(
        self, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        behavior: Any = handler.stream_stream
        gate = self

        async def counted(requests: Any, context: Any) -> AsyncIterator[Any]:
            # Checked and counted with no await between: a burst of opens cannot slip past.
            if gate.max_streams and gate.streams >= gate.max_streams:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many open streams (the server allows {gate.max_streams}); retry later",
                )
            gate.streams += 1
            try:
                async for response in behavior(requests, context):
                    yield response
            finally:
                gate.streams -= 1

        return grpc.stream_stream_rpc_method_handler(
            counted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
