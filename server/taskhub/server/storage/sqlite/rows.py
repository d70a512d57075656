"""The counters in `meta` for the SQLite tables (the rows themselves decode in `storage/rows.py`)."""

from __future__ import annotations

import sqlite3


def bump(conn: sqlite3.Connection, key: str, by: int = 1) -> int:
    """Adds `by` to a counter in `meta` and answers its value before the addition."""
    (after,) = conn.execute("UPDATE meta SET value = value + ? WHERE key = ? RETURNING value", (by, key)).fetchone()
    return after - by


def counter(conn: sqlite3.Connection, key: str) -> int:
    return conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
