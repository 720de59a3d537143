"""The SQL of the SQLite event log: functions of a connection, run inside a transaction
(writes by the group-commit writer, reads on a reader connection).

Nothing here reads the clock or knows about asyncio; times come in as arguments.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from wahook.errors import InvalidArgumentError
from wahook.store import filters
from wahook.store.base import (
    AppendResult,
    EventFilter,
    decode_event,
)
from wahook.store.sqlite.status import StatusUpdate, apply_statuses, prune_history
from wahook.v1 import account_pb2, event_pb2, status_pb2

_MAX_SEQUENCE = 2**63 - 1


def json_ints(values: Iterable[int]) -> str:
    """Many sequences as one parameter: a JSON array that SQLite's json_each expands, so
    the per-row loop runs in C -- about a third cheaper than executemany row by row."""
    return json.dumps([int(v) for v in values])


class Row:
    """One event prepared for INSERT (serialised in the caller, outside the transaction).

    ``params`` are the INSERT's values after the sequence, in column order, built once
    here so the writer thread only prepends the sequence.
    """

    __slots__ = ("dedupe_key", "event_id", "params", "status")

    def __init__(
        self,
        event_id: str,
        dedupe_key: str,
        params: tuple[object, ...],
        status: StatusUpdate | None,
    ) -> None:
        self.event_id = event_id
        self.dedupe_key = dedupe_key
        self.params = params
        self.status = status


def prepare(event: event_pb2.Event) -> Row:
    """Serialise one event and pull out its filter columns."""
    status: StatusUpdate | None = None
    if event.WhichOneof("payload") == "status":
        st = event.status
        errors = None
        if st.state == status_pb2.DELIVERY_STATE_FAILED and st.errors:
            errors = account_pb2.ValueErrors(errors=st.errors).SerializeToString()
        status = StatusUpdate(
            message_id=st.id,
            state=st.state,
            occurred_at=event.occurred_time.seconds,
            recipient_id=st.recipient_id,
            errors=errors,
        )
    received = event.received_time
    event_id = event.id
    dedupe_key = event.dedupe_key
    params = (
        event_id,
        dedupe_key,
        *filters.values_of(event),
        received.seconds + received.nanos / 1e9,
        event.SerializeToString(),
    )
    return Row(event_id, dedupe_key, params, status)


# The filter columns (store.filters.COLUMNS) between the keys and the received time, as
# prepare() orders a row's values.
_INSERT_COLUMNS = (
    "sequence",
    "id",
    "dedupe_key",
    *(c.sql for c in filters.COLUMNS),
    "received_at",
    "data",
)
_INSERT = (
    f"INSERT INTO events ({', '.join(_INSERT_COLUMNS)})"  # noqa: S608 - fixed column names
    f" VALUES ({', '.join('?' * len(_INSERT_COLUMNS))})"
)


def head(conn: sqlite3.Connection) -> int:
    """The newest sequence ever allocated (AUTOINCREMENT's counter survives pruning)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


# -- writes ------------------------------------------------------------------------------


def append_many(
    conn: sqlite3.Connection, appends: Sequence[Sequence[Row]]
) -> list[AppendResult | InvalidArgumentError]:
    """Every append of a group commit as one set-based write; one result per append.

    One SELECT finds which ids are stored already (Meta's retries), new rows get the
    sequences after the head in order (two appends of the same new id in one batch --
    concurrent POSTs of one retry -- store it once and both get its sequence), one
    executemany inserts them and apply_statuses records their statuses. No sequence is
    consumed by a duplicate, so duplicates leave no gaps that would count as lag.

    An id stored (or added earlier in the batch) for another dedupe key refuses its whole
    append with InvalidArgumentError -- returned, not raised, and nothing of that append
    is written -- while the other appends go on. Ids are derived from dedupe keys (see
    store.sqlite.schema), so that is a caller's bug.

    The sequences are given explicitly, from the head read under the write lock (the
    writer holds it), so they cannot differ from what AUTOINCREMENT would pick, and
    AUTOINCREMENT's counter follows them; a clash would fail the INSERT, not reuse one.
    """
    ids = {row.event_id for rows in appends for row in rows}
    # id -> (sequence, dedupe_key): stored ones, then the batch's new ones as they come.
    known: dict[str, tuple[int, str]] = {
        event_id: (int(sequence), dedupe_key)
        for event_id, sequence, dedupe_key in conn.execute(
            "SELECT id, sequence, dedupe_key FROM events"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        )
    }
    next_sequence = head(conn) + 1
    inserts: list[tuple[object, ...]] = []
    statuses: list[tuple[StatusUpdate, str, int]] = []
    results: list[AppendResult | InvalidArgumentError] = []
    for rows in appends:
        sequences: list[int] = []
        added: dict[str, tuple[int, str]] = {}
        refused: InvalidArgumentError | None = None
        for i, row in enumerate(rows):
            event_id = row.event_id
            hit = known.get(event_id) or added.get(event_id)
            if hit is None:
                sequence = next_sequence + len(added)
                added[event_id] = (sequence, row.dedupe_key)
                sequences.append(sequence)
            elif hit[1] == row.dedupe_key:
                sequences.append(hit[0])
            else:
                refused = InvalidArgumentError(
                    f"events[{i}].id {event_id!r} is stored for another dedupe_key"
                )
                break
        if refused is not None:
            results.append(refused)
            continue
        new_count = len(added)
        if added:
            known.update(added)
            next_sequence += new_count
            for row in rows:
                entry = added.pop(row.event_id, None)
                if entry is not None:
                    inserts.append((entry[0], *row.params))
                    if row.status is not None:
                        statuses.append((row.status, row.event_id, entry[0]))
        results.append(AppendResult(sequences=sequences, new_count=new_count))
    if inserts:
        conn.executemany(_INSERT, inserts)
        apply_statuses(conn, statuses)
    return results


def prune(conn: sqlite3.Connection, older_than: float, limit: int) -> int:
    """Delete at most ``limit`` prunable events (oldest first) and the status history
    that came with them (sqlite_status.prune_history); returns how many events."""
    doomed = json_ints(
        row[0]
        for row in conn.execute(
            "SELECT sequence FROM events WHERE received_at < ?"
            " AND sequence <= coalesce((SELECT min(position) FROM consumer_groups), ?)"
            # Probes the (group_name, sequence) primary key once per group: no extra
            # index on pending.sequence to maintain at every fetch and ack.
            " AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.sequence = events.sequence"
            " AND p.group_name IN (SELECT name FROM consumer_groups))"
            " AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.sequence = events.sequence"
            " AND d.group_name IN (SELECT name FROM consumer_groups))"
            " ORDER BY sequence LIMIT ?",
            (older_than, _MAX_SEQUENCE, limit),
        )
    )
    cur = conn.execute(
        "DELETE FROM events WHERE sequence IN (SELECT value FROM json_each(?))", (doomed,)
    )
    prune_history(conn, doomed)
    return max(cur.rowcount, 0)


# -- reads -------------------------------------------------------------------------------


def get(conn: sqlite3.Connection, event_id: str) -> event_pb2.Event | None:
    row = conn.execute("SELECT sequence, data FROM events WHERE id = ?", (event_id,)).fetchone()
    return None if row is None else decode_event(int(row[0]), row[1])


def list_events(
    conn: sqlite3.Connection, flt: EventFilter, after: int, until: int, limit: int
) -> list[event_pb2.Event]:
    where, params = filters.filter_sql(flt)
    rows = conn.execute(
        f"SELECT sequence, data FROM events WHERE sequence > ? AND sequence <= ?{where}"  # noqa: S608 - fixed column names
        " ORDER BY sequence LIMIT ?",
        (after, until if until > 0 else _MAX_SEQUENCE, *params, max(limit, 0)),
    ).fetchall()
    return [decode_event(int(s), d) for s, d in rows]
