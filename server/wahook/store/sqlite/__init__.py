"""The SQLite event log (the default backend): ``SqliteEventLog`` in ``log``, its writer
thread in ``writer``, the schema in ``schema`` and the SQL by subject in ``events``,
``groups``, ``lifecycle`` and ``status``."""

from wahook.store.sqlite.log import SqliteEventLog, SqliteMetrics

__all__ = ["SqliteEventLog", "SqliteMetrics"]
