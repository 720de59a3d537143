"""The wahook.v1.EventService servicer on grpc.aio: the one seam where wahook's errors
become gRPC status codes.

Each WahookError carries its status code name (``grpc_code``) and a message written for
the caller; any other exception is a bug: it is logged here and the caller gets INTERNAL
with a generic message, so no library detail leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import grpc

from wahook.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UpstreamError,
    WahookError,
)
from wahook.media import MediaClient, MediaInfo, check_media_id
from wahook.rpc import convert
from wahook.rpc.subscribe import Hub, Session
from wahook.store.base import EventLog
from wahook.v1 import service_pb2

_log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME: str = service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name
T = TypeVar("T")


def status_for(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message the caller sees for ``exc``."""
    if isinstance(exc, WahookError):
        return getattr(grpc.StatusCode, exc.grpc_code, grpc.StatusCode.INTERNAL), exc.message
    _log.error("unexpected error in an EventService call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error"


async def _abort(context: Context, exc: Exception) -> NoReturn:
    code, message = status_for(exc)
    await context.abort(code, message)


async def _call(context: Context, work: Awaitable[T]) -> T:
    """Run a unary rpc's work; a failure becomes the call's status."""
    try:
        result = await work
    except Exception as exc:
        await _abort(context, exc)
    return result


async def _first_options(
    requests: AsyncIterator[service_pb2.SubscribeRequest],
) -> convert.SubscribeSettings:
    first = await anext(aiter(requests), None)
    if first is None:
        raise InvalidArgumentError("options: the stream ended before its first request")
    return convert.parse_subscribe_options(first)


# The unary rpcs of a group's lifecycle and dead letters, registered by name.
_GROUP_RPCS = (
    "ListConsumerGroups",
    "DeleteConsumerGroup",
    "SeekConsumerGroup",
    "ListDeadLetters",
    "RedeliverDeadLetters",
    "DiscardDeadLetters",
)


class EventService:
    """Serves one EventLog. ``hub`` tracks the open Subscribe streams.

    Registered by ``handler()`` rather than the generated add_..._to_server, because
    Subscribe yields pre-serialised responses (see convert.encode_response);
    tests/unit/test_rpc_servicer.py checks the table against service.proto's descriptor.
    """

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE_NAME, self.method_handlers())

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        """Every rpc of the service by name, with its streaming kind and its messages."""

        def serialize(message: Any) -> bytes:
            return message if isinstance(message, bytes) else bytes(message.SerializeToString())

        unary = grpc.unary_unary_rpc_method_handler
        return {
            "Subscribe": grpc.stream_stream_rpc_method_handler(
                self.Subscribe,
                request_deserializer=service_pb2.SubscribeRequest.FromString,
                response_serializer=serialize,
            ),
            "GetEvent": unary(
                self.GetEvent,
                request_deserializer=service_pb2.GetEventRequest.FromString,
                response_serializer=serialize,
            ),
            "ListEvents": unary(
                self.ListEvents,
                request_deserializer=service_pb2.ListEventsRequest.FromString,
                response_serializer=serialize,
            ),
            "GetMessageStatus": unary(
                self.GetMessageStatus,
                request_deserializer=service_pb2.GetMessageStatusRequest.FromString,
                response_serializer=serialize,
            ),
            "GetConsumerGroup": unary(
                self.GetConsumerGroup,
                request_deserializer=service_pb2.GetConsumerGroupRequest.FromString,
                response_serializer=serialize,
            ),
            **{
                name: unary(
                    getattr(self, name),
                    request_deserializer=getattr(service_pb2, f"{name}Request").FromString,
                    response_serializer=serialize,
                )
                for name in _GROUP_RPCS
            },
            "DownloadMedia": grpc.unary_stream_rpc_method_handler(
                self.DownloadMedia,
                request_deserializer=service_pb2.DownloadMediaRequest.FromString,
                response_serializer=serialize,
            ),
        }

    def __init__(
        self,
        log: EventLog,
        hub: Hub,
        *,
        clock: Callable[[], float],
        heartbeat_interval: float,
        max_response_bytes: int,
        fetch_linger: float = 0.0,
        media: MediaClient | None = None,
        stream_max_bytes: int = 0,
    ) -> None:
        self._event_log = log
        self._media = media
        self._hub = hub
        self._clock = clock
        self._heartbeat_interval = heartbeat_interval
        self._max_response_bytes = max_response_bytes
        self._fetch_linger = fetch_linger
        self._stream_max_bytes = stream_max_bytes

    async def Subscribe(
        self,
        request_iterator: AsyncIterator[service_pb2.SubscribeRequest],
        context: Context,
    ) -> AsyncIterator[service_pb2.SubscribeResponse | bytes]:
        """Batches arrive already serialised (bytes); heartbeats as messages."""
        if self._hub.closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; reconnect")
        session: Session | None = None
        failure: Exception | None = None
        reader: asyncio.Task[None] | None = None
        try:
            settings = await _first_options(request_iterator)
            await self._event_log.create_group(
                settings.group,
                settings.filter,
                settings.start,
                self._clock(),
                settings.group_settings,
            )
            session = Session(
                self._event_log,
                self._hub,
                settings,
                clock=self._clock,
                heartbeat_interval=self._heartbeat_interval,
                max_response_bytes=self._max_response_bytes,
                linger=self._fetch_linger,
                max_bytes=self._stream_max_bytes,
            )
            self._hub.add(session)
            # The response headers now, not with the first response: a client sees the
            # stream open (the group exists) at once, not at the first event or heartbeat
            # (some, tonic's, block until then).
            await context.send_initial_metadata(())
            reader = asyncio.create_task(session.read_acks(request_iterator))
            async for response in session.deliveries(reader):
                yield response
        except Exception as exc:
            failure = exc
        finally:
            if reader is not None:
                reader.cancel()
                if reader.done() and not reader.cancelled() and failure is None:
                    # The stream ended another way (shutdown); its error is moot now.
                    reader.exception()
            if session is not None:
                self._hub.remove(session)
                await asyncio.shield(session.close())
        if failure is not None:
            await _abort(context, failure)
        if self._hub.closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; reconnect")

    async def DownloadMedia(
        self, request: service_pb2.DownloadMediaRequest, context: Context
    ) -> AsyncIterator[service_pb2.DownloadMediaResponse | bytes]:
        """The MediaInfo, then the chunks. Each yield returns once grpc has taken the
        message (within the stream's flow-control window), so a slow reader holds up the
        download rather than the sidecar buffering it (see wahook.media)."""
        failure: Exception | None = None
        try:
            # aclosing: a client that goes away closes the download at once (its
            # connection to Meta too), not whenever the generator is collected.
            async with contextlib.aclosing(self._media_responses(request.media_id)) as parts:
                async for response in parts:
                    yield response
        except Exception as exc:
            failure = exc
        if failure is not None:
            if isinstance(failure, UpstreamError):
                # Operators need these (an expired token, Meta down); never has the token.
                _log.warning("DownloadMedia: %s", failure.message)
            await _abort(context, failure)

    async def _media_responses(
        self, media_id: str
    ) -> AsyncGenerator[service_pb2.DownloadMediaResponse | bytes, None]:
        check_media_id(media_id)
        if self._media is None:
            raise FailedPreconditionError(
                "media download is not configured: set WAHOOK_GRAPH_ACCESS_TOKEN (or "
                "WAHOOK_GRAPH_ACCESS_TOKEN_FILE, or --graph-access-token) to a Graph API "
                "access token"
            )
        async with contextlib.aclosing(self._media.download(media_id)) as parts:
            async for part in parts:
                if isinstance(part, MediaInfo):
                    info = service_pb2.MediaInfo(
                        media_id=part.media_id,
                        mime_type=part.mime_type,
                        sha256=part.sha256,
                        file_size=part.file_size,
                    )
                    yield service_pb2.DownloadMediaResponse(info=info)
                else:
                    yield convert.media_chunk_response(part)

    async def GetEvent(
        self, request: service_pb2.GetEventRequest, context: Context
    ) -> service_pb2.GetEventResponse:
        return await _call(context, self._get_event(request))

    async def ListEvents(
        self, request: service_pb2.ListEventsRequest, context: Context
    ) -> service_pb2.ListEventsResponse:
        return await _call(context, self._list_events(request))

    async def GetMessageStatus(
        self, request: service_pb2.GetMessageStatusRequest, context: Context
    ) -> service_pb2.GetMessageStatusResponse:
        return await _call(context, self._message_status(request))

    async def GetConsumerGroup(
        self, request: service_pb2.GetConsumerGroupRequest, context: Context
    ) -> service_pb2.GetConsumerGroupResponse:
        return await _call(context, self._consumer_group(request))

    async def _get_event(
        self, request: service_pb2.GetEventRequest
    ) -> service_pb2.GetEventResponse:
        convert.check_id(request.id, "id")
        event = await self._event_log.get(request.id)
        if event is None:
            raise NotFoundError(f"no event with id {request.id!r}")
        return service_pb2.GetEventResponse(event=event)

    async def _list_events(
        self, request: service_pb2.ListEventsRequest
    ) -> service_pb2.ListEventsResponse:
        flt = convert.parse_filter(request.filter, "filter")
        convert.check_sequence(request.after_sequence, "after_sequence")
        convert.check_sequence(request.until_sequence, "until_sequence")
        if request.until_sequence and request.until_sequence < request.after_sequence:
            raise InvalidArgumentError("until_sequence must be 0 or at least after_sequence")
        after = max(request.after_sequence, convert.parse_page_token(request.page_token))
        size = min(request.page_size or convert.DEFAULT_PAGE_SIZE, convert.MAX_PAGE_SIZE)
        # One more than the page tells whether a next page exists.
        events = await self._event_log.list_events(flt, after, request.until_sequence, size + 1)
        response = service_pb2.ListEventsResponse(events=events[:size])
        if len(events) > size:
            response.next_page_token = convert.page_token(events[size - 1].sequence)
        return response

    async def _message_status(
        self, request: service_pb2.GetMessageStatusRequest
    ) -> service_pb2.GetMessageStatusResponse:
        convert.check_id(request.message_id, "message_id")
        record = await self._event_log.message_status(request.message_id)
        if record is None:
            raise NotFoundError(f"no status received for message {request.message_id!r}")
        return convert.message_status(record)

    async def _consumer_group(
        self, request: service_pb2.GetConsumerGroupRequest
    ) -> service_pb2.GetConsumerGroupResponse:
        convert.check_id(request.consumer_group, "consumer_group")
        info = await self._event_log.group_info(request.consumer_group)
        if info is None:
            raise NotFoundError(f"no consumer group {request.consumer_group!r}")
        connected = self._hub.connected(request.consumer_group)
        return service_pb2.GetConsumerGroupResponse(group=convert.consumer_group(info, connected))

    # -- a group's lifecycle and dead letters ---------------------------------------------

    async def ListConsumerGroups(
        self, request: service_pb2.ListConsumerGroupsRequest, context: Context
    ) -> service_pb2.ListConsumerGroupsResponse:
        return await _call(context, self._list_groups(request))

    async def DeleteConsumerGroup(
        self, request: service_pb2.DeleteConsumerGroupRequest, context: Context
    ) -> service_pb2.DeleteConsumerGroupResponse:
        return await _call(context, self._delete_group(request))

    async def SeekConsumerGroup(
        self, request: service_pb2.SeekConsumerGroupRequest, context: Context
    ) -> service_pb2.SeekConsumerGroupResponse:
        return await _call(context, self._seek_group(request))

    async def ListDeadLetters(
        self, request: service_pb2.ListDeadLettersRequest, context: Context
    ) -> service_pb2.ListDeadLettersResponse:
        return await _call(context, self._list_dead_letters(request))

    async def RedeliverDeadLetters(
        self, request: service_pb2.RedeliverDeadLettersRequest, context: Context
    ) -> service_pb2.RedeliverDeadLettersResponse:
        return await _call(context, self._redeliver_dead_letters(request))

    async def DiscardDeadLetters(
        self, request: service_pb2.DiscardDeadLettersRequest, context: Context
    ) -> service_pb2.DiscardDeadLettersResponse:
        return await _call(context, self._discard_dead_letters(request))

    async def _list_groups(
        self, request: service_pb2.ListConsumerGroupsRequest
    ) -> service_pb2.ListConsumerGroupsResponse:
        after = convert.parse_name_token(request.page_token)
        size = min(request.page_size or convert.DEFAULT_PAGE_SIZE, convert.MAX_PAGE_SIZE)
        infos = await self._event_log.list_groups(after, size + 1)
        response = service_pb2.ListConsumerGroupsResponse(
            groups=[convert.consumer_group(i, self._hub.connected(i.name)) for i in infos[:size]]
        )
        if len(infos) > size:
            response.next_page_token = convert.name_token(infos[size - 1].name)
        return response

    async def _delete_group(
        self, request: service_pb2.DeleteConsumerGroupRequest
    ) -> service_pb2.DeleteConsumerGroupResponse:
        group = _group_name(request.consumer_group)
        if not await self._event_log.delete_group(group):
            raise NotFoundError(f"no consumer group {group!r}")
        _log.info("consumer group %s deleted", group)
        self._hub.end_group(group, NotFoundError(f"consumer group {group!r} was deleted"))
        return service_pb2.DeleteConsumerGroupResponse()

    async def _seek_group(
        self, request: service_pb2.SeekConsumerGroupRequest
    ) -> service_pb2.SeekConsumerGroupResponse:
        group = _group_name(request.consumer_group)
        if not request.HasField("position") or request.position.WhichOneof("position") is None:
            raise InvalidArgumentError("position is required")
        position = convert.parse_start(request.position, "position")
        info = await self._event_log.seek_group(group, position, self._clock())
        _log.info("consumer group %s sought to after %d", group, info.delivered_sequence)
        # Its streams' leases ended: they fetch from the new position at once.
        self._hub.forget_leases(group)
        return service_pb2.SeekConsumerGroupResponse(
            group=convert.consumer_group(info, self._hub.connected(group))
        )

    async def _list_dead_letters(
        self, request: service_pb2.ListDeadLettersRequest
    ) -> service_pb2.ListDeadLettersResponse:
        group = _group_name(request.consumer_group)
        after = convert.parse_page_token(request.page_token)
        size = min(request.page_size or convert.DEFAULT_PAGE_SIZE, convert.MAX_PAGE_SIZE)
        dead = await self._event_log.list_dead_letters(group, after, size + 1)
        response = service_pb2.ListDeadLettersResponse()
        total = 0
        for letter in dead[:size]:
            total += letter.event.ByteSize()
            if response.dead_letters and total > self._max_response_bytes:
                break
            response.dead_letters.append(convert.dead_letter(letter))
        if len(dead) > len(response.dead_letters):
            response.next_page_token = convert.page_token(response.dead_letters[-1].event.sequence)
        return response

    async def _redeliver_dead_letters(
        self, request: service_pb2.RedeliverDeadLettersRequest
    ) -> service_pb2.RedeliverDeadLettersResponse:
        group = _group_name(request.consumer_group)
        chosen = _chosen(request.sequences, request.all)
        count = await self._event_log.redeliver_dead_letters(group, chosen, self._clock())
        if count:
            self._hub.poke(group)
        return service_pb2.RedeliverDeadLettersResponse(count=count)

    async def _discard_dead_letters(
        self, request: service_pb2.DiscardDeadLettersRequest
    ) -> service_pb2.DiscardDeadLettersResponse:
        group = _group_name(request.consumer_group)
        chosen = _chosen(request.sequences, request.all)
        return service_pb2.DiscardDeadLettersResponse(
            count=await self._event_log.discard_dead_letters(group, chosen)
        )


def _group_name(name: str) -> str:
    if not name:
        raise InvalidArgumentError("consumer_group is required")
    return name


def _chosen(sequences: Sequence[int], everything: bool) -> list[int] | None:
    """The dead letters a request names: None for all."""
    if everything:
        if sequences:
            raise InvalidArgumentError("give either sequences or all, not both")
        return None
    if not sequences:
        raise InvalidArgumentError("sequences (or all) is required")
    convert.check_sequences(sequences, "sequences")
    return list(sequences)
