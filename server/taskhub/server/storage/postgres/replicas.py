"""The PostgreSQL replica tables: the one leader row, and how far each replica followed the log."""

from __future__ import annotations

from taskhub.server.storage.contract import NO_LEADER, Leader
from taskhub.server.storage.postgres.connection import Connection


class PostgresReplicas:
    """The `ReplicaTable` of the contract on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def leader(self) -> Leader:
        row = self.conn.execute("SELECT name, term, deadline FROM leader").fetchone()
        return NO_LEADER if row is None else Leader(row[0], row[1], row[2])

    def set_leader(self, leader: Leader) -> None:
        self.conn.execute(
            "INSERT INTO leader (name, term, deadline) VALUES (%s, %s, %s) ON CONFLICT (one) DO UPDATE"
            " SET name = excluded.name, term = excluded.term, deadline = excluded.deadline",
            (leader.name, leader.term, leader.deadline),
        )

    def report(self, name: str, seq: int, now: int) -> None:
        self.conn.execute(
            "INSERT INTO replicas (name, seq, seen_at) VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE"
            " SET seq = excluded.seq, seen_at = excluded.seen_at",
            (name, seq, now),
        )

    def slowest(self, since: int) -> int | None:
        row = self.conn.execute("SELECT MIN(seq) FROM replicas WHERE seen_at >= %s", (since,)).fetchone()
        return None if row is None else row[0]

    def leave(self, name: str) -> None:
        self.conn.execute("DELETE FROM replicas WHERE name = %s", (name,))
