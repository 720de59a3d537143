"""The SQLite event log's schema and connection settings.

Durability choice: WAL journal with ``synchronous=FULL`` for every transaction that
appends events. In WAL mode FULL fsyncs the WAL at every commit, so a committed append
survives kill -9 *and* power loss; NORMAL would only survive a process crash. The cost
is one fsync per commit, which the single writer's group commit shares between every
append queued at that moment. (Consumer-group bookkeeping alone commits with NORMAL;
see store.sqlite.log.)

``events.sequence`` is AUTOINCREMENT so a sequence is never reused, even after retention
deleted the newest events: a consumer group's position must never point past a
sequence that is handed out again.

Checkpoints stay SQLite's own: the WAL auto-checkpoint runs inside the COMMIT that crosses
1000 WAL pages (about every 100 small commits), which that batch waits for. Moving it off
the commit path was built, measured and reverted, with no reproducible gain; the figures
are in docs/decisions/0017-wal-auto-checkpoint.md.

Dedupe is on ``events.id`` (UNIQUE), not on a second unique index over ``dedupe_key``:
an event's id is derived from its dedupe key (core.ids: a hash of it), so unique ids
are unique dedupe keys, and append checks the stored dedupe key on every id conflict.
Both keys are random, and every random-key index dirties a page per insert that the
commit writes to the WAL: one such index is cheaper than two (figures:
docs/decisions/0003-one-unique-index.md), and GetEvent still finds events by id.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 5

_EVENTS = """
CREATE TABLE IF NOT EXISTS {name} (
    sequence        INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    dedupe_key      TEXT NOT NULL,
    type            INTEGER NOT NULL,
    message_type    TEXT,
    phone_number_id TEXT NOT NULL,
    waba_id         TEXT NOT NULL,
    received_at     REAL NOT NULL,
    data            BLOB NOT NULL
);
"""

_DDL = (
    _EVENTS.format(name="events")
    + """
CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at);
"""
)

_DDL_REST = """

CREATE TABLE IF NOT EXISTS message_status (
    message_id   TEXT PRIMARY KEY,
    state        INTEGER NOT NULL,
    state_time   INTEGER NOT NULL,
    recipient_id TEXT NOT NULL,
    errors       BLOB
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS status_history (
    rowid       INTEGER PRIMARY KEY, -- the status event's sequence: pruned with its event
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
    created_at REAL NOT NULL,
    next_due   REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
    group_name TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    error      TEXT NOT NULL,
    dead_at    REAL NOT NULL,
    PRIMARY KEY (group_name, sequence)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS pending (
    group_name TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    consumer   TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    deadline   REAL NOT NULL,
    PRIMARY KEY (group_name, sequence)
) WITHOUT ROWID;
"""

# Columns added since a table was first created, with their definitions (the defaults
# are what an existing row gets). next_due 0: every group looks for due entries once.
# Version 5: a group's lease counter (started at the creation time in milliseconds, so a
# group deleted and created again does not reuse its predecessor's leases), delivery
# attempts before dead letters, idle expiry (existing groups count as active at the
# upgrade: a service restarting with it must not lose its group), and per pending entry
# its lease and the error of its last attempt.
_ADDED_COLUMNS = [
    ("consumer_groups", "next_due", "REAL NOT NULL DEFAULT 0"),
    ("consumer_groups", "leases", "INTEGER NOT NULL DEFAULT 0"),
    ("consumer_groups", "max_attempts", "INTEGER NOT NULL DEFAULT 10"),
    ("consumer_groups", "expire_after", "REAL NOT NULL DEFAULT 604800"),
    ("consumer_groups", "last_active", "REAL NOT NULL DEFAULT 0"),
    ("pending", "lease", "INTEGER NOT NULL DEFAULT 0"),
    ("pending", "error", "TEXT NOT NULL DEFAULT ''"),
]

# Version 3: no index on pending deadlines (each delivery inserted and each ack deleted an
# entry in it); consumer_groups.next_due, a lower bound on the group's earliest pending
# deadline, tells a fetch when to look for due entries at all (see store.sqlite.groups).
_MIGRATE_2_TO_3 = """
DROP INDEX IF EXISTS pending_deadline;
"""

# Version 4 keys each status history row by its event's sequence (it had its own rowid), so
# retention deletes the history with the events. Rows whose event retention had already
# deleted go now, and so do the records of messages left without any history.
_MIGRATE_3_TO_4 = """
CREATE TABLE status_history_v4 (
    rowid       INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL,
    state       INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    applied     INTEGER NOT NULL
);
INSERT INTO status_history_v4 SELECT e.sequence, h.message_id, h.state, h.occurred_at,
    h.event_id, h.applied FROM status_history h JOIN events e ON e.id = h.event_id;
DROP TABLE status_history;
ALTER TABLE status_history_v4 RENAME TO status_history;
CREATE INDEX status_history_message ON status_history (message_id, rowid);
DELETE FROM message_status WHERE NOT EXISTS
    (SELECT 1 FROM status_history h WHERE h.message_id = message_status.message_id);
"""

# Version 1 (this project's first days) deduplicated on a unique dedupe_key plus an
# index on id: rebuild the events table, keeping sequences and the AUTOINCREMENT head.
_MIGRATE_1_TO_2 = (
    _EVENTS.format(name="events_v2")  # noqa: S608 - constant statements, no input in them
    + """
INSERT INTO events_v2 SELECT sequence, id, dedupe_key, type, message_type,
    phone_number_id, waba_id, received_at, data FROM events;
CREATE TEMP TABLE old_head AS SELECT seq FROM sqlite_sequence WHERE name = 'events';
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
DELETE FROM sqlite_sequence WHERE name = 'events';
INSERT INTO sqlite_sequence (name, seq) SELECT 'events', seq FROM old_head;
DROP TABLE old_head;
DROP INDEX IF EXISTS pending_sequence;
"""
)


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
    # 16 MiB of page cache (the default is 2 MiB): the unique id index takes random keys,
    # and inserting into it misses the cache often once the log is large.
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
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _known_version(conn)
        for statement in _statements(_MIGRATE_1_TO_2 if version == 1 else ""):
            conn.execute(statement)
        for statement in _statements(_DDL + _DDL_REST):
            conn.execute(statement)
        for statement in _statements(_MIGRATE_2_TO_3):
            conn.execute(statement)
        for statement in _statements(_MIGRATE_3_TO_4 if 0 < version < 4 else ""):
            conn.execute(statement)
        for table, column, ddl in _ADDED_COLUMNS:
            columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
                if column == "last_active":  # a column's default must be a constant
                    conn.execute(
                        "UPDATE consumer_groups"
                        " SET last_active = (julianday('now') - 2440587.5) * 86400.0"
                    )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _known_version(conn: sqlite3.Connection) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise sqlite3.OperationalError(
            f"the event log has schema version {version}; this wahook knows up to "
            f"{SCHEMA_VERSION} (a newer wahook wrote it)"
        )
    return version


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT the transaction first; these run inside it.
    return [s.strip() for s in script.split(";") if s.strip()]
