"""The PostgreSQL webhook table and outbox: webhook rows with their cursors, and the finished tasks they are owed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskhub.server.storage.contract import WebhookRecord
from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.postgres.rows import webhooks_changed, webhooks_set
from taskhub.server.storage.webhook_rows import WEBHOOK_COLUMNS, config_row, webhook_record


class PostgresWebhooks:
    """The `WebhookTable` of the contract on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _value(self, query: str, params: tuple = ()) -> Any:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None  # an aggregate or meta's counter: always one row
        return row[0]

    def all_webhooks(self) -> list[WebhookRecord]:
        rows = self.conn.execute(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, uuid")
        return [webhook_record(r) for r in rows]

    def get_webhook(self, uuid: str) -> WebhookRecord | None:
        row = self.conn.execute(f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE uuid = %s", (uuid,)).fetchone()
        return None if row is None else webhook_record(row)

    def has_webhooks(self) -> bool:
        known = webhooks_set(self.conn)  # read as the unit opened, in its first round trip
        if known is not None:
            return known
        return self.conn.execute("SELECT 1 FROM webhooks LIMIT 1").fetchone() is not None

    def _last_id(self) -> int:
        return self._value("SELECT value FROM meta WHERE key = 'outbox_last'")

    def put_webhook(self, record: WebhookRecord) -> None:
        webhooks_changed(self.conn)
        url, headers, secret = config_row(record)
        updated = self.conn.execute(
            "UPDATE webhooks SET url = %s, headers = %s, secret = %s WHERE uuid = %s",
            (url, headers, secret, record.uuid),
        )
        if updated.rowcount == 0:  # new: owed only what comes from now on
            self.conn.execute(
                f"INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, 0)",
                (record.uuid, url, headers, secret, record.created_at, self._last_id()),
            )

    def delete_webhook(self, uuid: str) -> bool:
        webhooks_changed(self.conn)
        deleted = self.conn.execute("DELETE FROM webhooks WHERE uuid = %s", (uuid,)).rowcount == 1
        if deleted:
            self._prune()
        return deleted

    def add_outbox(self, task_uids: Sequence[int], bound: int) -> int:
        last = self._last_id()
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO webhook_outbox (id, task_uid) VALUES (%s, %s)",
                [(last + 1 + i, uid) for i, uid in enumerate(task_uids)],
            )
        last += len(task_uids)
        self.conn.execute("UPDATE meta SET value = %s WHERE key = 'outbox_last'", (last,))
        cut = last - bound
        first = self._value("SELECT MIN(id) FROM webhook_outbox")
        if first is None or cut < first:
            return 0
        # Ids run without a gap: a webhook behind the cut loses (cut - its cursor) entries.
        dropped = self._value(
            "SELECT COALESCE(SUM(%s - GREATEST(delivered, %s)), 0) FROM webhooks WHERE delivered < %s",
            (cut, first - 1, cut),
        )
        self.conn.execute(
            "UPDATE webhooks SET dropped = dropped + (%s - GREATEST(delivered, %s)), delivered = %s WHERE delivered < %s",
            (cut, first - 1, cut, cut),
        )
        self.conn.execute("DELETE FROM webhook_outbox WHERE id <= %s", (cut,))
        return int(dropped)

    def outbox_after(self, after: int, limit: int) -> list[tuple[int, int]]:
        rows = self.conn.execute(
            "SELECT id, task_uid FROM webhook_outbox WHERE id > %s ORDER BY id LIMIT %s", (after, limit)
        )
        return [(r[0], r[1]) for r in rows]

    def mark_delivered(self, uuid: str, upto: int) -> None:
        self.conn.execute("UPDATE webhooks SET delivered = %s WHERE uuid = %s AND delivered < %s", (upto, uuid, upto))
        self._prune()

    def _prune(self) -> None:
        """Deletes the entries every webhook took (all of them when none is left)."""
        floor = self._value("SELECT MIN(delivered) FROM webhooks")
        if floor is None:
            self.conn.execute("DELETE FROM webhook_outbox")
        else:
            self.conn.execute("DELETE FROM webhook_outbox WHERE id <= %s", (floor,))

    def outbox_size(self) -> int:
        # Entries are only ever taken from the head, so the ids held are consecutive: two index probes, no count.
        return self._value("SELECT COALESCE(MAX(id) - MIN(id) + 1, 0) FROM webhook_outbox")
