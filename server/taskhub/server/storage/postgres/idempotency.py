"""The PostgreSQL idempotency table: one row per caller's key, found by its digest."""

from __future__ import annotations

from collections.abc import Sequence

from taskhub.server.storage.contract import IdempotencyRecord
from taskhub.server.storage.postgres.connection import Connection


class PostgresIdempotency:
    """The `IdempotencyTable` of the contract on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get_keys(self, keys: Sequence[bytes]) -> dict[bytes, IdempotencyRecord]:
        rows = self.conn.execute(
            "SELECT key, request, first_uid, count, created_at FROM idempotency_keys WHERE key = ANY(%s)",
            (list(keys),),
        )
        return {
            bytes(key): IdempotencyRecord(bytes(key), bytes(request), first_uid, count, created_at)
            for key, request, first_uid, count, created_at in rows
        }

    def put_keys(self, records: Sequence[IdempotencyRecord]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO idempotency_keys (key, request, first_uid, count, created_at) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET request = excluded.request, first_uid = excluded.first_uid,"
                " count = excluded.count, created_at = excluded.created_at",
                [(r.key, r.request, r.first_uid, r.count, r.created_at) for r in records],
            )

    def prune_keys(self, before: int, keep: int) -> int:
        gone = self.conn.execute("DELETE FROM idempotency_keys WHERE created_at < %s", (before,)).rowcount
        row = self.conn.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()
        over = (row[0] if row else 0) - keep
        if over > 0:
            # The oldest first, by the created_at index.
            gone += self.conn.execute(
                "DELETE FROM idempotency_keys WHERE key IN"
                " (SELECT key FROM idempotency_keys ORDER BY created_at LIMIT %s)",
                (over,),
            ).rowcount
        return gone
