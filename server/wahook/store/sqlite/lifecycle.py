"""The SQL of a consumer group's lifecycle in the SQLite event log: deleting, seeking,
idle expiry, and its dead letters (list, redeliver, discard). Functions of a connection,
run inside the writer's transaction (reads: on a reader connection); times come in as
arguments."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from wahook.errors import NotFoundError
from wahook.store.base import DeadLetter, GroupInfo, StartPosition, decode_event
from wahook.store.sqlite.events import json_ints
from wahook.store.sqlite.groups import group_info, start_position


def _require(conn: sqlite3.Connection, group: str) -> None:
    if conn.execute("SELECT 1 FROM consumer_groups WHERE name = ?", (group,)).fetchone() is None:
        raise NotFoundError(f"consumer group {group!r} does not exist")


def delete_group(conn: sqlite3.Connection, group: str) -> bool:
    conn.execute("DELETE FROM pending WHERE group_name = ?", (group,))
    conn.execute("DELETE FROM dead_letters WHERE group_name = ?", (group,))
    return conn.execute("DELETE FROM consumer_groups WHERE name = ?", (group,)).rowcount > 0


def seek_group(
    conn: sqlite3.Connection, group: str, position: StartPosition, now: float
) -> GroupInfo:
    _require(conn, group)
    to = start_position(conn, position)
    conn.execute("DELETE FROM pending WHERE group_name = ?", (group,))
    conn.execute("DELETE FROM dead_letters WHERE group_name = ? AND sequence > ?", (group, to))
    conn.execute(
        "UPDATE consumer_groups SET position = ?, next_due = ?, last_active = ? WHERE name = ?",
        (to, float("inf"), now, group),
    )
    info = group_info(conn, group)
    assert info is not None
    return info


def touch_groups(conn: sqlite3.Connection, groups: Sequence[str], now: float) -> None:
    conn.execute(
        "UPDATE consumer_groups SET last_active = max(last_active, ?)"
        " WHERE name IN (SELECT value FROM json_each(?))",
        (now, _json_texts(groups)),
    )


def _json_texts(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def expire_groups(conn: sqlite3.Connection, now: float) -> list[str]:
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM consumer_groups"
            " WHERE expire_after > 0 AND last_active + expire_after <= ? ORDER BY name",
            (now,),
        )
    ]
    for name in names:
        delete_group(conn, name)
    return names


def list_dead_letters(
    conn: sqlite3.Connection, group: str, after_sequence: int, limit: int
) -> list[DeadLetter]:
    _require(conn, group)
    rows = conn.execute(
        "SELECT d.sequence, e.data, d.attempts, d.error, d.dead_at FROM dead_letters d"
        " JOIN events e ON e.sequence = d.sequence"
        " WHERE d.group_name = ? AND d.sequence > ? ORDER BY d.sequence LIMIT ?",
        (group, after_sequence, max(limit, 0)),
    ).fetchall()
    return [
        DeadLetter(decode_event(int(s), data), int(attempts), str(error), float(at))
        for s, data, attempts, error, at in rows
    ]


def _chosen(sequences: Sequence[int] | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE fragment on dead_letters for these sequences (None: all)."""
    if sequences is None:
        return "", ()
    return " AND sequence IN (SELECT value FROM json_each(?))", (json_ints(sequences),)


def redeliver_dead_letters(
    conn: sqlite3.Connection, group: str, sequences: Sequence[int] | None, now: float
) -> int:
    _require(conn, group)
    where, params = _chosen(sequences)
    # Attempt 0 and lease 0 (no delivery holds it): the next fetch hands it out as
    # attempt 1 under a new lease.
    moved = conn.execute(
        "INSERT OR REPLACE INTO pending (group_name, sequence, consumer, attempt, deadline,"  # noqa: S608 - fixed fragment
        " lease, error) SELECT group_name, sequence, '', 0, ?, 0, ''"
        f" FROM dead_letters WHERE group_name = ?{where}",
        (now, group, *params),
    ).rowcount
    conn.execute(f"DELETE FROM dead_letters WHERE group_name = ?{where}", (group, *params))  # noqa: S608 - fixed fragment
    if moved > 0:
        conn.execute(
            "UPDATE consumer_groups SET next_due = min(next_due, ?) WHERE name = ?", (now, group)
        )
    return max(moved, 0)


def discard_dead_letters(
    conn: sqlite3.Connection, group: str, sequences: Sequence[int] | None
) -> int:
    _require(conn, group)
    where, params = _chosen(sequences)
    cur = conn.execute(f"DELETE FROM dead_letters WHERE group_name = ?{where}", (group, *params))  # noqa: S608 - fixed fragment
    return max(cur.rowcount, 0)
