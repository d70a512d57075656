"""The PostgreSQL key table: key rows, without their secrets (derived from the uid and the master key)."""

from __future__ import annotations

from taskhub.server.model import KeyRecord
from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.postgres.rows import bump, counter
from taskhub.server.storage.rows import KEY_COLUMNS, key_record, key_row


class PostgresKeys:
    """The `KeyTable` of the contract on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all_keys(self) -> list[KeyRecord]:
        """Every key, newest first."""
        rows = self.conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, uid")
        return [key_record(r) for r in rows]

    def insert_key(self, key: KeyRecord) -> bool:
        cursor = self.conn.execute(
            f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            key_row(key),
        )
        if cursor.rowcount != 1:
            return False
        bump(self.conn, "keys_version")
        return True

    def update_key(self, uid: str, fields: dict, now: int) -> KeyRecord | None:
        for column in ("name", "description"):
            if column in fields:
                self.conn.execute(
                    f"UPDATE api_keys SET {column} = %s, updated_at = %s WHERE uid = %s", (fields[column], now, uid)
                )
        row = self.conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE uid = %s", (uid,)).fetchone()
        if row is None:
            return None
        bump(self.conn, "keys_version")
        return key_record(row)

    def delete_key(self, uid: str) -> bool:
        if self.conn.execute("DELETE FROM api_keys WHERE uid = %s", (uid,)).rowcount != 1:
            return False
        bump(self.conn, "keys_version")
        return True

    def version(self) -> int:
        return counter(self.conn, "keys_version")
