"""The PostgreSQL key table: key rows, without their secrets (derived from the uid and the master key)."""

from __future__ import annotations

import json

from taskhub.server.model import KeyRecord
from taskhub.server.storage.postgres.connection import Connection

_KEY_COLUMNS = "uid, name, description, actions, indexes, expires_at, created_at, updated_at"


def _record(row: tuple) -> KeyRecord:
    uid, name, description, actions, indexes, expires_at, created_at, updated_at = row
    return KeyRecord(
        uid, name, description, json.loads(actions), json.loads(indexes), expires_at, created_at, updated_at
    )


class PostgresKeys:
    """The `KeyTable` of the contract on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all_keys(self) -> list[KeyRecord]:
        """Every key, newest first."""
        rows = self.conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, uid")
        return [_record(r) for r in rows]

    def insert_key(self, key: KeyRecord) -> bool:
        cursor = self.conn.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                key.uid,
                key.name,
                key.description,
                json.dumps(key.actions),
                json.dumps(key.indexes),
                key.expires_at,
                key.created_at,
                key.updated_at,
            ),
        )
        return cursor.rowcount == 1

    def update_key(self, uid: str, fields: dict, now: int) -> KeyRecord | None:
        for column in ("name", "description"):
            if column in fields:
                self.conn.execute(
                    f"UPDATE api_keys SET {column} = %s, updated_at = %s WHERE uid = %s", (fields[column], now, uid)
                )
        row = self.conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE uid = %s", (uid,)).fetchone()
        return None if row is None else _record(row)

    def delete_key(self, uid: str) -> bool:
        return self.conn.execute("DELETE FROM api_keys WHERE uid = %s", (uid,)).rowcount == 1
