"""The SQLite idempotency table: one row per caller's key, found by its digest."""

from __future__ import annotations

import sqlite3

from taskhub.server.storage.contract import IdempotencyRecord


class SqliteIdempotency:
    """The `IdempotencyTable` of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get_key(self, key: bytes) -> IdempotencyRecord | None:
        row = self.conn.execute(
            "SELECT request, first_uid, count, created_at FROM idempotency_keys WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else IdempotencyRecord(key, *row)

    def put_key(self, record: IdempotencyRecord) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO idempotency_keys (key, request, first_uid, count, created_at) VALUES (?, ?, ?, ?, ?)",
            (record.key, record.request, record.first_uid, record.count, record.created_at),
        )

    def prune_keys(self, before: int, keep: int) -> int:
        gone = self.conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (before,)).rowcount
        over = self.conn.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0] - keep
        if over > 0:
            # The oldest first, by the created_at index; rowid breaks ties in insertion order.
            gone += self.conn.execute(
                "DELETE FROM idempotency_keys WHERE rowid IN"
                " (SELECT rowid FROM idempotency_keys ORDER BY created_at, rowid LIMIT ?)",
                (over,),
            ).rowcount
        return gone
