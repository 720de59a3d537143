"""The SQLite log's per-message status record: the forward-only state of each outbound
message (core.status_order decides) and every status update in a history table, written
in the transaction that appends the status event."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from wahook.core.status_order import advances
from wahook.store.base import StatusRecord, StatusTransition
from wahook.v1 import account_pb2, status_pb2


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """The part of a status event the per-message status record needs."""

    message_id: str
    state: int
    occurred_at: int
    recipient_id: str
    errors: bytes | None


def apply_status(conn: sqlite3.Connection, st: StatusUpdate, event_id: str) -> None:
    """Record one new status event: history always, the state only when it advances."""
    current = conn.execute(
        "SELECT state FROM message_status WHERE message_id = ?", (st.message_id,)
    ).fetchone()
    current_state = int(current[0]) if current else status_pb2.DELIVERY_STATE_UNSPECIFIED
    applied = advances(current_state, st.state)
    if current is None:
        conn.execute(
            "INSERT INTO message_status (message_id, state, state_time, recipient_id, errors)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                st.message_id,
                st.state if applied else status_pb2.DELIVERY_STATE_UNSPECIFIED,
                st.occurred_at if applied else 0,
                st.recipient_id,
                st.errors if applied else None,
            ),
        )
    elif applied:
        conn.execute(
            "UPDATE message_status SET state = ?, state_time = ?, errors = ?,"
            " recipient_id = CASE WHEN ? != '' THEN ? ELSE recipient_id END"
            " WHERE message_id = ?",
            (st.state, st.occurred_at, st.errors, st.recipient_id, st.recipient_id, st.message_id),
        )
    conn.execute(
        "INSERT INTO status_history (message_id, state, occurred_at, event_id, applied)"
        " VALUES (?, ?, ?, ?, ?)",
        (st.message_id, st.state, st.occurred_at, event_id, int(applied)),
    )


def message_status(conn: sqlite3.Connection, message_id: str) -> StatusRecord | None:
    row = conn.execute(
        "SELECT state, state_time, recipient_id, errors FROM message_status WHERE message_id = ?",
        (message_id,),
    ).fetchone()
    if row is None:
        return None
    history = [
        StatusTransition(state=int(s), occurred_at=int(t), event_id=e, applied=bool(a))
        for s, t, e, a in conn.execute(
            "SELECT state, occurred_at, event_id, applied FROM status_history"
            " WHERE message_id = ? ORDER BY rowid",
            (message_id,),
        )
    ]
    errors = list(account_pb2.ValueErrors.FromString(row[3]).errors) if row[3] else []
    return StatusRecord(
        message_id=message_id,
        state=int(row[0]),
        state_time=int(row[1]),
        recipient_id=row[2],
        errors=errors,
        history=history,
    )
