"""The SQLite webhook table and outbox: webhook rows with their cursors, and the finished tasks they are owed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from taskhub.server.storage.contract import WebhookRecord
from taskhub.server.storage.webhook_rows import WEBHOOK_COLUMNS, config_row, webhook_record


class SqliteWebhooks:
    """The `WebhookTable` of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def all_webhooks(self) -> list[WebhookRecord]:
        rows = self.conn.execute(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, uuid")
        return [webhook_record(r) for r in rows]

    def get_webhook(self, uuid: str) -> WebhookRecord | None:
        row = self.conn.execute(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE uuid = ?", (uuid,)).fetchone()
        return None if row is None else webhook_record(row)

    def has_webhooks(self) -> bool:
        return self.conn.execute("SELECT 1 FROM webhooks LIMIT 1").fetchone() is not None

    def _last_id(self) -> int:
        return self.conn.execute("SELECT value FROM meta WHERE key = 'outbox_last'").fetchone()[0]

    def put_webhook(self, record: WebhookRecord) -> None:
        url, headers, secret = config_row(record)
        updated = self.conn.execute(
            "UPDATE webhooks SET url = ?, headers = ?, secret = ? WHERE uuid = ?", (url, headers, secret, record.uuid)
        )
        if updated.rowcount == 0:  # new: owed only what comes from now on
            self.conn.execute(
                f"INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (record.uuid, url, headers, secret, record.created_at, self._last_id()),
            )

    def delete_webhook(self, uuid: str) -> bool:
        deleted = self.conn.execute("DELETE FROM webhooks WHERE uuid = ?", (uuid,)).rowcount == 1
        if deleted:
            self._prune()
        return deleted

    def add_outbox(self, task_uids: Sequence[int], bound: int) -> int:
        last = self._last_id()
        self.conn.executemany(
            "INSERT INTO webhook_outbox (id, task_uid) VALUES (?, ?)",
            [(last + 1 + i, uid) for i, uid in enumerate(task_uids)],
        )
        last += len(task_uids)
        self.conn.execute("UPDATE meta SET value = ? WHERE key = 'outbox_last'", (last,))
        cut = last - bound
        first = self.conn.execute("SELECT MIN(id) FROM webhook_outbox").fetchone()[0]
        if first is None or cut < first:
            return 0
        # Ids run without a gap: a webhook behind the cut loses (cut - its cursor) entries.
        dropped = self.conn.execute(
            "SELECT COALESCE(SUM(? - MAX(delivered, ?)), 0) FROM webhooks WHERE delivered < ?", (cut, first - 1, cut)
        ).fetchone()[0]
        self.conn.execute(
            "UPDATE webhooks SET dropped = dropped + (? - MAX(delivered, ?)), delivered = ? WHERE delivered < ?",
            (cut, first - 1, cut, cut),
        )
        self.conn.execute("DELETE FROM webhook_outbox WHERE id <= ?", (cut,))
        return int(dropped)

    def outbox_after(self, after: int, limit: int) -> list[tuple[int, int]]:
        rows = self.conn.execute(
            "SELECT id, task_uid FROM webhook_outbox WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [(r[0], r[1]) for r in rows]

    def mark_delivered(self, uuid: str, upto: int) -> None:
        self.conn.execute("UPDATE webhooks SET delivered = ? WHERE uuid = ? AND delivered < ?", (upto, uuid, upto))
        self._prune()

    def _prune(self) -> None:
        """Deletes the entries every webhook took (all of them when none is left)."""
        floor = self.conn.execute("SELECT MIN(delivered) FROM webhooks").fetchone()[0]
        if floor is None:
            self.conn.execute("DELETE FROM webhook_outbox")
        else:
            self.conn.execute("DELETE FROM webhook_outbox WHERE id <= ?", (floor,))

    def outbox_size(self) -> int:
        # Entries are only ever taken from the head, so the ids held are consecutive: two index probes, no count.
        return self.conn.execute("SELECT COALESCE(MAX(id) - MIN(id) + 1, 0) FROM webhook_outbox").fetchone()[0]
