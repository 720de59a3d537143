"""The SQL of consumer groups in the SQLite event log: creating a group, fetching a
batch for a consumer (redeliveries first, then new events), ack, nack and release, and a
group's figures. Functions of a connection, run inside the writer's transaction (reads:
on a reader connection); times come in as arguments.

Due entries (an expired ack deadline, a nack's delay over, a released stream's events)
are found without an index on ``pending.deadline``: ``consumer_groups.next_due`` is a
lower bound on the group's earliest pending deadline, kept in the same transactions as
``pending`` (so a rollback or another process cannot leave it wrong): a fetch only scans
the group's pending entries once ``now`` reaches it, then sets it to the earliest
deadline left. Whatever lowers a deadline (a new delivery, nack, release) lowers it;
an ack leaves it low, which at worst costs one scan that finds nothing. The index cost
every delivery an insert and every ack a delete in a second b-tree (the saving:
docs/architecture.md, "Why it is fast": delivery).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from wahook.errors import FailedPreconditionError, NotFoundError
from wahook.store import filters
from wahook.store.base import (
    DEADLINE_PASSED,
    STREAM_ENDED,
    EncodedBatch,
    EventFilter,
    GroupInfo,
    GroupSettings,
    Lease,
    StartPosition,
)
from wahook.store.sqlite.events import head, json_ints


def create_group(
    conn: sqlite3.Connection,
    name: str,
    flt: EventFilter,
    start: StartPosition,
    now: float,
    *,
    settings: GroupSettings,
) -> GroupInfo:
    row = conn.execute("SELECT filter FROM consumer_groups WHERE name = ?", (name,)).fetchone()
    if row is not None:
        if not flt.is_empty() and filters.canonical(flt) != row[0]:
            raise FailedPreconditionError(
                f"consumer group {name!r} exists with a different filter; "
                "send the same filter or an empty one"
            )
        conn.execute("UPDATE consumer_groups SET last_active = ? WHERE name = ?", (now, name))
    else:
        conn.execute(
            "INSERT INTO consumer_groups (name, filter, position, created_at, leases,"
            " max_attempts, expire_after, last_active) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                filters.canonical(flt),
                start_position(conn, start),
                now,
                int(now * 1000),
                settings.max_delivery_attempts,
                settings.expire_after_idle,
                now,
            ),
        )
    info = group_info(conn, name)
    assert info is not None
    return info


def start_position(conn: sqlite3.Connection, start: StartPosition) -> int:
    if start.kind == "latest":
        return head(conn)
    if start.kind == "after_sequence":
        return max(0, start.after_sequence)
    if start.kind == "from_time":
        row = conn.execute(
            "SELECT min(sequence) FROM events WHERE received_at >= ?", (start.from_time,)
        ).fetchone()
        return head(conn) if row[0] is None else int(row[0]) - 1
    return 0


def fetch(
    conn: sqlite3.Connection,
    group: str,
    consumer: str,
    *,
    max_count: int,
    ack_deadline: float,
    now: float,
) -> EncodedBatch:
    row = conn.execute(
        "SELECT filter, position, next_due, leases, max_attempts FROM consumer_groups"
        " WHERE name = ?",
        (group,),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"consumer group {group!r} does not exist")
    deadline = now + ack_deadline
    if max_count <= 0:
        return EncodedBatch([], [], [], deadline, head(conn))
    flt, position, next_due = filters.parse_canonical(row[0]), int(row[1]), float(row[2])
    lease = int(row[3]) + 1
    head_now = head(conn)
    expired: list[tuple[int, int, bytes]] = []
    dead = 0
    due = next_due
    if next_due <= now:
        expired, dead = _redeliver(
            conn,
            group,
            consumer=consumer,
            lease=lease,
            deadline=deadline,
            now=now,
            max_count=max_count,
            max_attempts=int(row[4]),
        )
        # Due ones beyond max_count keep it at or below now: the next fetch looks again.
        earliest = conn.execute(
            "SELECT min(deadline) FROM pending WHERE group_name = ?", (group,)
        ).fetchone()[0]
        due = math.inf if earliest is None else float(earliest)
    fresh: list[tuple[int, bytes]] = []
    new_position = position
    remaining = max_count - len(expired)
    if remaining > 0:
        where, params = filters.filter_sql(flt)
        fresh = conn.execute(
            f"SELECT sequence, data FROM events WHERE sequence > ?{where}"  # noqa: S608 - fixed column names
            " ORDER BY sequence LIMIT ?",
            (position, *params, remaining),
        ).fetchall()
        # Fewer matches than asked for means every event up to the head was looked at:
        # the non-matching ones are skipped for good by moving the position to the head.
        new_position = fresh[-1][0] if len(fresh) == remaining else max(position, head_now)
        if fresh:
            due = min(due, deadline)
            # The same range and filter as the SELECT, in the same transaction: exactly
            # the fresh rows, without sending their sequences back in as a parameter.
            insert = (
                "INSERT INTO pending (group_name, sequence, consumer, attempt, deadline, lease)"
                " SELECT ?, sequence, ?, 1, ?, ? FROM events WHERE sequence > ? AND sequence <= ?"
            )
            conn.execute(
                insert + where,
                (group, consumer, deadline, lease, position, fresh[-1][0], *params),
            )
    delivered = bool(expired or fresh)
    if delivered or new_position != position or due != next_due:
        conn.execute(
            "UPDATE consumer_groups SET position = ?, next_due = ?, leases = ? WHERE name = ?",
            (new_position, due, lease if delivered else lease - 1, group),
        )
    if not expired:
        sequences, events = (list(c) for c in zip(*fresh, strict=True)) if fresh else ([], [])
        attempts = [1] * len(sequences)
        return EncodedBatch(sequences, attempts, events, deadline, head_now, lease, dead)
    rows = sorted([*expired, *((s, 1, d) for s, d in fresh)], key=itemgetter(0))
    return EncodedBatch(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        deadline,
        head_now,
        lease,
        dead,
    )


def _redeliver(
    conn: sqlite3.Connection,
    group: str,
    *,
    consumer: str,
    lease: int,
    deadline: float,
    now: float,
    max_count: int,
    max_attempts: int,
) -> tuple[list[tuple[int, int, bytes]], int]:
    """Up to ``max_count`` due entries handed to ``consumer`` again (sequence, attempt,
    data), most overdue first (they have waited longest); due entries whose attempts are
    spent go to the dead letters on the way (and are counted)."""
    out: list[tuple[int, int, bytes]] = []
    dead = 0
    while len(out) < max_count:
        want = max_count - len(out)
        rows = conn.execute(
            "SELECT p.sequence, p.attempt, e.data FROM pending p"
            " JOIN events e ON e.sequence = p.sequence"
            " WHERE p.group_name = ? AND p.deadline <= ? ORDER BY p.deadline, p.sequence"
            " LIMIT ?",
            (group, now, want),
        ).fetchall()
        spent = [s for s, attempt, _ in rows if attempt >= max_attempts]
        if spent:
            to_dead_letters(conn, group, json_ints(spent), DEADLINE_PASSED, now)
            dead += len(spent)
        again = [(s, attempt + 1, data) for s, attempt, data in rows if attempt < max_attempts]
        if again:
            conn.execute(
                "UPDATE pending SET consumer = ?, attempt = attempt + 1, deadline = ?,"
                " lease = ?, error = '' WHERE group_name = ?"
                " AND sequence IN (SELECT value FROM json_each(?))",
                (consumer, deadline, lease, group, json_ints(s for s, _, _ in again)),
            )
            out.extend(again)
        if len(rows) < want:
            break
    return out, dead


def to_dead_letters(
    conn: sqlite3.Connection, group: str, sequences_json: str, error: str, now: float
) -> None:
    """Move pending entries to the dead letters, with their own error if they have one
    (a nack's, a released stream's), else ``error``."""
    conn.execute(
        "INSERT OR REPLACE INTO dead_letters (group_name, sequence, attempts, error, dead_at)"
        " SELECT group_name, sequence, attempt, CASE error WHEN '' THEN ? ELSE error END, ?"
        " FROM pending WHERE group_name = ? AND sequence IN (SELECT value FROM json_each(?))",
        (error, now, group, sequences_json),
    )
    conn.execute(
        "DELETE FROM pending WHERE group_name = ? AND sequence IN (SELECT value FROM json_each(?))",
        (group, sequences_json),
    )


def _runs(sequences: Sequence[int]) -> list[tuple[int, int]]:
    """The distinct sequences as ascending runs of consecutive integers, (first, last)."""
    runs: list[tuple[int, int]] = []
    ordered = sorted(set(sequences))
    if not ordered:
        return runs
    first = last = ordered[0]
    for seq in ordered[1:]:
        if seq != last + 1:
            runs.append((first, last))
            first = seq
        last = seq
    runs.append((first, last))
    return runs


def release(conn: sqlite3.Connection, group: str, consumer: str, now: float) -> int:
    cur = conn.execute(
        "UPDATE pending SET deadline = ?, error = ?"
        " WHERE group_name = ? AND consumer = ? AND deadline > ?",
        (now, STREAM_ENDED, group, consumer, now),
    )
    return _lower_next_due(conn, group, now, max(cur.rowcount, 0))


def _by_lease(leases: Sequence[Lease]) -> dict[int, list[int]]:
    by_lease: dict[int, list[int]] = {}
    for seq, lease in leases:
        by_lease.setdefault(lease, []).append(seq)
    return by_lease


def ack_leases(conn: sqlite3.Connection, group: str, leases: Sequence[Lease]) -> list[int]:
    acked: list[int] = []
    for lease, seqs in _by_lease(leases).items():
        runs = _runs(seqs)
        if len(runs) * 4 <= len(seqs):
            # Mostly consecutive (a catch-up acks whole batches): one range DELETE per run
            # skips the JSON round trip and the IN lookups, about a third cheaper. A range
            # holds only acked sequences (and the lease), so it touches nothing else.
            for first, last in runs:
                acked += _column(
                    conn,
                    "DELETE FROM pending WHERE group_name = ? AND sequence BETWEEN ? AND ?"
                    " AND lease = ? RETURNING sequence",
                    (group, first, last, lease),
                )
        else:
            acked += _column(
                conn,
                "DELETE FROM pending WHERE group_name = ? AND lease = ?"
                " AND sequence IN (SELECT value FROM json_each(?)) RETURNING sequence",
                (group, lease, json_ints(seqs)),
            )
    return acked


def _column(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[int]:
    return [int(r[0]) for r in conn.execute(sql, params).fetchall()]


def _update_leases(
    conn: sqlite3.Connection, group: str, leases: Sequence[Lease], assignments: str, *values: object
) -> list[int]:
    """``UPDATE pending SET <assignments>`` on the entries still under these leases."""
    changed: list[int] = []
    for lease, seqs in _by_lease(leases).items():
        changed += _column(
            conn,
            f"UPDATE pending SET {assignments} WHERE group_name = ? AND lease = ?"  # noqa: S608 - fixed assignments
            " AND sequence IN (SELECT value FROM json_each(?)) RETURNING sequence",
            (*values, group, lease, json_ints(seqs)),
        )
    return changed


def nack_leases(
    conn: sqlite3.Connection, group: str, leases: Sequence[Lease], redeliver_at: float, error: str
) -> list[int]:
    # The entry loses its consumer so that the nacking stream's release() on close
    # does not cut the requested delay short.
    changed = _update_leases(
        conn, group, leases, "deadline = ?, consumer = '', error = ?", redeliver_at, error
    )
    _lower_next_due(conn, group, redeliver_at, len(changed))
    return changed


def modify_deadlines(
    conn: sqlite3.Connection, group: str, leases: Sequence[Lease], deadline: float
) -> list[int]:
    changed = _update_leases(conn, group, leases, "deadline = ?", deadline)
    _lower_next_due(conn, group, deadline, len(changed))
    return changed


def dead_letter(
    conn: sqlite3.Connection, group: str, leases: Sequence[Lease], error: str, now: float
) -> list[int]:
    # The error given replaces the entry's own: it is why this one is dead-lettered.
    held = _update_leases(conn, group, leases, "error = ?", error)
    if held:
        to_dead_letters(conn, group, json_ints(held), error, now)
    return held


def _lower_next_due(conn: sqlite3.Connection, group: str, deadline: float, changed: int) -> int:
    """Keep next_due at or below ``deadline``, which ``changed`` entries now have."""
    if changed:
        conn.execute(
            "UPDATE consumer_groups SET next_due = min(next_due, ?) WHERE name = ?",
            (deadline, group),
        )
    return changed


def group_info(conn: sqlite3.Connection, name: str) -> GroupInfo | None:
    row = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM consumer_groups WHERE name = ?",  # noqa: S608 - fixed columns
        (name,),
    ).fetchone()
    return None if row is None else to_group_info(conn, row, head(conn))


_GROUP_COLUMNS = "name, filter, position, created_at, max_attempts, expire_after, last_active"


def to_group_info(conn: sqlite3.Connection, row: tuple[Any, ...], head_sequence: int) -> GroupInfo:
    """A ``_GROUP_COLUMNS`` row as GroupInfo, with its pending and dead-letter counts."""
    name = str(row[0])
    pending, dead = conn.execute(
        "SELECT (SELECT count(*) FROM pending WHERE group_name = ?),"
        " (SELECT count(*) FROM dead_letters WHERE group_name = ?)",
        (name, name),
    ).fetchone()
    position = int(row[2])
    return GroupInfo(
        name=name,
        filter=filters.parse_canonical(str(row[1])),
        delivered_sequence=position,
        pending_count=int(pending),
        lag=max(0, head_sequence - position),
        head_sequence=head_sequence,
        created_at=float(row[3]),
        settings=GroupSettings(int(row[4]), float(row[5])),
        dead_letter_count=int(dead),
        last_active=float(row[6]),
    )


def list_groups(conn: sqlite3.Connection, after_name: str, limit: int) -> list[GroupInfo]:
    head_sequence = head(conn)
    rows = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM consumer_groups WHERE name > ? ORDER BY name LIMIT ?",  # noqa: S608 - fixed columns
        (after_name, limit),
    ).fetchall()
    return [to_group_info(conn, row, head_sequence) for row in rows]
