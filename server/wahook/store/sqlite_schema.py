"""The SQLite event log's schema and connection settings.

Durability choice: WAL journal with ``synchronous=FULL`` for every transaction that
appends events. In WAL mode FULL fsyncs the WAL at every commit, so a committed append
survives kill -9 *and* power loss; NORMAL would only survive a process crash. The cost
is one fsync per commit, which the single writer's group commit shares between every
append queued at that moment. (Consumer-group bookkeeping alone commits with NORMAL;
see store.sqlite.)

``events.sequence`` is AUTOINCREMENT so a sequence is never reused, even after retention
deleted the newest events: a consumer group's position must never point past a
sequence that is handed out again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    sequence        INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL,
    dedupe_key      TEXT NOT NULL UNIQUE,
    type            INTEGER NOT NULL,
    message_type    TEXT,
    phone_number_id TEXT NOT NULL,
    waba_id         TEXT NOT NULL,
    received_at     REAL NOT NULL,
    data            BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_id ON events (id);
CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at);

CREATE TABLE IF NOT EXISTS message_status (
    message_id   TEXT PRIMARY KEY,
    state        INTEGER NOT NULL,
    state_time   INTEGER NOT NULL,
    recipient_id TEXT NOT NULL,
    errors       BLOB
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS status_history (
    rowid       INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL,
    state       INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    applied     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS status_history_message ON status_history (message_id, rowid);

CREATE TABLE IF NOT EXISTS consumer_groups (
    name       TEXT PRIMARY KEY,
    filter     TEXT NOT NULL,
    position   INTEGER NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS pending (
    group_name TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    consumer   TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    deadline   REAL NOT NULL,
    PRIMARY KEY (group_name, sequence)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_deadline ON pending (group_name, deadline);
"""


def connect(path: Path, *, busy_timeout: float, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=FULL.

    ``busy_timeout`` is how long a statement waits for another connection's (or
    process's) write lock before failing with "database is locked".
    """
    conn = sqlite3.connect(
        str(path),
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = OFF")
    # 16 MiB of page cache (the default is 2 MiB): the unique and id indexes take random
    # keys, and inserting into them misses the cache often once the log is large.
    conn.execute("PRAGMA cache_size = -16384")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


def initialise(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL and create the tables (idempotent, safe from two processes)."""
    # journal_mode is persistent in the file; setting it needs no transaction.
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL journal mode (got {mode!r})")
    conn.executescript(f"BEGIN IMMEDIATE;{_DDL}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;")
