"""The SQLite replica tables: one server serves a file (a kernel lock), so they are its connection's own.

TEMP tables on the writer's connection: transactional like the rest of a unit of work, never in
the file, gone when the server stops. The rules run as for replicas; the one server always leads.
"""

from __future__ import annotations

import sqlite3

from taskhub.server.storage.contract import NO_LEADER, Leader


class SqliteReplicas:
    """The `ReplicaTable` of the contract on the writer's connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS leader (one INTEGER PRIMARY KEY CHECK (one = 1), name TEXT NOT NULL,"
            " term INTEGER NOT NULL, deadline INTEGER NOT NULL)"
        )
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS replicas (name TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
            " seen_at INTEGER NOT NULL)"
        )

    def leader(self) -> Leader:
        row = self.conn.execute("SELECT name, term, deadline FROM temp.leader").fetchone()
        return NO_LEADER if row is None else Leader(row[0], row[1], row[2])

    def set_leader(self, leader: Leader) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO temp.leader (one, name, term, deadline) VALUES (1, ?, ?, ?)",
            (leader.name, leader.term, leader.deadline),
        )

    def report(self, name: str, seq: int, now: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO temp.replicas (name, seq, seen_at) VALUES (?, ?, ?)", (name, seq, now)
        )

    def slowest(self, since: int) -> int | None:
        row = self.conn.execute("SELECT MIN(seq) FROM temp.replicas WHERE seen_at >= ?", (since,)).fetchone()
        return None if row is None else row[0]

    def leave(self, name: str) -> None:
        self.conn.execute("DELETE FROM temp.replicas WHERE name = ?", (name,))
