"""The SQLite key table: key rows, without their secrets.

A key's secret is derived from its uid and the
master key (as Meilisearch does), so it is never written to disk.
"""

from __future__ import annotations

import sqlite3

from taskhub.server.model import KeyRecord
from taskhub.server.storage.rows import KEY_COLUMNS, key_record, key_row


class SqliteKeys:
    """The `KeyTable` of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def all_keys(self) -> list[KeyRecord]:
        """Every key, newest first."""
        rows = self.conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, uid")
        return [key_record(r) for r in rows]

    def insert_key(self, key: KeyRecord) -> bool:
        """Stores a new key; False if its uid is taken."""
        cursor = self.conn.execute(
            f"INSERT OR IGNORE INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            key_row(key),
        )
        if cursor.rowcount != 1:
            return False
        self._written()
        return True

    def update_key(self, uid: str, fields: dict, now: int) -> KeyRecord | None:
        """Changes a key's name or description; None if it does not exist."""
        for column in ("name", "description"):
            if column in fields:
                self.conn.execute(
                    f"UPDATE api_keys SET {column} = ?, updated_at = ? WHERE uid = ?", (fields[column], now, uid)
                )
        row = self.conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            return None
        self._written()
        return key_record(row)

    def delete_key(self, uid: str) -> bool:
        if self.conn.execute("DELETE FROM api_keys WHERE uid = ?", (uid,)).rowcount != 1:
            return False
        self._written()
        return True

    def version(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'keys_version'").fetchone()
        return 0 if row is None else int(row[0])

    def _written(self) -> None:
        # A row of its own in `meta`, made on the first key write (a database from before it has none).
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('keys_version', 1) ON CONFLICT (key) DO UPDATE SET value = value + 1"
        )
