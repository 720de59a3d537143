"""The SQLite log's per-message status record: the forward-only state of each outbound
message (core.status_order decides) and every status update in a history table, written
in the transaction that appends the status event.

Retention: a history row has its status event's sequence as rowid and is deleted with
that event (``prune_history``, in the transaction of the events' prune); a message's record
goes with the last of its history rows. Without that both tables grew for ever: every
status Meta sends (three or four per outbound message) left a row that outlived its event."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wahook.core.status_order import advances
from wahook.store.base import StatusRecord, StatusTransition
from wahook.v1 import account_pb2, status_pb2

_UNSPECIFIED = status_pb2.DELIVERY_STATE_UNSPECIFIED


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.36 us more per status
class StatusUpdate:
    """The part of a status event the per-message status record needs."""

    message_id: str
    state: int
    occurred_at: int
    recipient_id: str
    errors: bytes | None


def apply_statuses(
    conn: sqlite3.Connection, updates: Sequence[tuple[StatusUpdate, str, int]]
) -> None:
    """Record new status events (each with its event id and sequence), in order: history
    always, a message's state only when an update advances it (core.status_order).

    Set-based, for a whole group commit at once: one SELECT of the current records of
    every message concerned, the forward-only rule applied here in order (two updates of
    one message in the batch see each other), then one upsert per changed record and
    one history row per update, each with a single executemany.
    """
    if not updates:
        return
    ids = list({st.message_id for st, _, _ in updates})
    # message_id -> [state, state_time, recipient_id, errors], as stored or as updated.
    records: dict[str, list[Any]] = {
        row[0]: list(row[1:])
        for row in conn.execute(
            "SELECT message_id, state, state_time, recipient_id, errors FROM message_status"
            " WHERE message_id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        )
    }
    changed: dict[str, list[Any]] = {}
    history: list[tuple[int, str, int, int, str, int]] = []
    for st, event_id, sequence in updates:
        message_id = st.message_id
        record = records.get(message_id)
        applied = advances(record[0] if record else _UNSPECIFIED, st.state)
        if record is None:
            # The first update of a message creates its record, applied or not.
            record = (
                [st.state, st.occurred_at, st.recipient_id, st.errors]
                if applied
                else [_UNSPECIFIED, 0, st.recipient_id, None]
            )
            records[message_id] = changed[message_id] = record
        elif applied:
            record[0], record[1], record[3] = st.state, st.occurred_at, st.errors
            if st.recipient_id:
                record[2] = st.recipient_id
            changed[message_id] = record
        history.append((sequence, message_id, st.state, st.occurred_at, event_id, int(applied)))
    if changed:
        conn.executemany(
            "INSERT INTO message_status (message_id, state, state_time, recipient_id, errors)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id) DO UPDATE SET"
            " state = excluded.state, state_time = excluded.state_time,"
            " recipient_id = excluded.recipient_id, errors = excluded.errors",
            [(message_id, *record) for message_id, record in changed.items()],
        )
    conn.executemany(
        "INSERT INTO status_history (rowid, message_id, state, occurred_at, event_id, applied)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        history,
    )


def prune_history(conn: sqlite3.Connection, sequences: str) -> None:
    """Delete the history rows of the events ``sequences`` (a JSON array) and the record
    of every message that has no history row left."""
    touched = [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT message_id FROM status_history"
            " WHERE rowid IN (SELECT value FROM json_each(?))",
            (sequences,),
        )
    ]
    if not touched:
        return
    conn.execute(
        "DELETE FROM status_history WHERE rowid IN (SELECT value FROM json_each(?))",
        (sequences,),
    )
    conn.execute(
        "DELETE FROM message_status WHERE message_id IN (SELECT value FROM json_each(?))"
        " AND NOT EXISTS (SELECT 1 FROM status_history h"
        " WHERE h.message_id = message_status.message_id)",
        (json.dumps(touched),),
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
