"""The forward-only rule for outbound message delivery states (wahook.v1.DeliveryState).

Meta delivers statuses out of order: a "delivered" webhook can arrive after the "read"
one for the same message, and Meta retries any of them. So a message's state only moves
forward: SENT < DELIVERED < READ < PLAYED. PLAYED ranks above READ because a voice note
is played after its message was read, and a play implies the read. FAILED can follow
any non-failed state (Meta reports failures late, e.g. after "sent") and nothing moves a
failed message again. OTHER (a status string this version does not know) and
UNSPECIFIED never advance anything, since their place in the order is unknown.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from wahook.v1 import status_pb2

SENT = status_pb2.DELIVERY_STATE_SENT
DELIVERED = status_pb2.DELIVERY_STATE_DELIVERED
READ = status_pb2.DELIVERY_STATE_READ
PLAYED = status_pb2.DELIVERY_STATE_PLAYED
FAILED = status_pb2.DELIVERY_STATE_FAILED

# Rank of the ordered, non-final states; anything absent has no place in the order.
_RANK: dict[int, int] = {SENT: 1, DELIVERED: 2, READ: 3, PLAYED: 4}


def advances(current: int, new: int) -> bool:
    """Whether a status update reporting ``new`` moves a message in state ``current``
    forward. ``current`` is DELIVERY_STATE_UNSPECIFIED (0) when no update has applied yet.
    """
    if current == FAILED:
        return False
    if new == FAILED:
        return True
    new_rank = _RANK.get(new)
    if new_rank is None:
        return False
    return new_rank > _RANK.get(current, 0)
