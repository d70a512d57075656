"""The counters in `meta` for the PostgreSQL tables; rows decode as SQLite's do (same columns, same JSON)."""

from __future__ import annotations

from taskhub.server.storage.postgres.connection import Connection


def bump(conn: Connection, key: str, by: int = 1) -> int:
    """Adds `by` to a counter in `meta` and answers its value before the addition."""
    row = conn.execute("UPDATE meta SET value = value + %s WHERE key = %s RETURNING value", (by, key)).fetchone()
    assert row is not None, key
    return int(row[0]) - by


def counter(conn: Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
    assert row is not None, key
    return int(row[0])
