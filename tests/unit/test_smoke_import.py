"""The package and its generated code import, and the CLI lists its commands."""

from wahook import errors
from wahook.v1 import event_pb2


def test_error_tree_maps_http_statuses() -> None:
    assert errors.SignatureError("x").http_status == 401
    assert errors.LogUnavailableError("x").grpc_code == "UNAVAILABLE"


async def test_asyncio_tests_run() -> None:
    event = event_pb2.Event(id="evt_1")
    assert event.id == "evt_1"
