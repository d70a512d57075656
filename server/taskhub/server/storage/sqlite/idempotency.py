"""The SQLite idempotency table: one row per caller's key, found by its digest."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from taskhub.server.storage.contract import IdempotencyRecord

_CHUNK = 500


class SqliteIdempotency:
    """The `IdempotencyTable` of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get_keys(self, keys: Sequence[bytes]) -> dict[bytes, IdempotencyRecord]:
        found: dict[bytes, IdempotencyRecord] = {}
        # In chunks: SQLite caps the parameters of one statement.
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows = self.conn.execute(
                "SELECT key, request, first_uid, count, created_at FROM idempotency_keys"
                f" WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((row[0], IdempotencyRecord(*row)) for row in rows)
        return found

    def put_keys(self, records: Sequence[IdempotencyRecord]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO idempotency_keys (key, request, first_uid, count, created_at) VALUES (?, ?, ?, ?, ?)",
            [(r.key, r.request, r.first_uid, r.count, r.created_at) for r in records],
        )

    def prune_keys(self, before: int, keep: int) -> int:
        gone = self.conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (before,)).rowcount
        over = self.conn.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0] - keep
        if over > 0:
            # The oldest first, by the created_at index.
            gone += self.conn.execute(
                "DELETE FROM idempotency_keys WHERE key IN"
                " (SELECT key FROM idempotency_keys ORDER BY created_at LIMIT ?)",
                (over,),
            ).rowcount
        return gone
