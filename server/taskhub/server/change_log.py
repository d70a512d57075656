"""The change log half of the SQLite store: every committed task state, under its sequence number.

`Store` inherits this mixin. Each change is appended in the transaction that makes
it, so a watcher that resumes from a sequence number replays exactly what was
committed; `prune_changes` keeps the newest ones only.
"""

from __future__ import annotations

from taskhub.server.model import Task
from taskhub.server.rows import compact, dumps, loads, row_to_task


def _string(value: str | None) -> str:
    return "null" if value is None else compact(value)


class ChangeLog:
    """Change-log SQL; mixed into `Store`, whose `conn`, `atomic` and `last_seq` counter it uses.

    What it logs in a transaction is also what `Store.atomic` hands the index at commit.
    """

    def last_seq(self) -> int:
        return self.conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]

    def _log_states(self, tasks: list[Task], encoded: list[tuple[str | None, str | None]] | None = None, *,
                    deleted: bool = False) -> None:
        """Appends tasks' new (or, `deleted`, last) states under their sequence numbers, in one statement.

        `encoded` may hold their (details, error) already as JSON, as the row update wrote them.
        """
        if encoded is None:
            encoded = [(dumps(task.details), dumps(task.error)) for task in tasks]
        self._logged += ((task, deleted) for task in tasks)
        self.conn.executemany(
            "INSERT INTO changes (seq, uid, deleted, task) VALUES (?, ?, ?, ?)",
            [(t.seq, t.uid, int(deleted), compact([t.uid, t.index_uid, int(t.status), int(t.type), t.canceled_by,
                                                   details, error, t.enqueued_at, t.started_at, t.finished_at, t.seq]))
             for t, (details, error) in zip(tasks, encoded)])

    def _log_many(self, tasks: list[Task], details: list[str | None]) -> None:
        """Appends new enqueued tasks in bulk; `details` are their details already as JSON."""
        self._logged += ((task, False) for task in tasks)
        # The same row `_log` writes, put together by hand: only the two strings need encoding.
        self.conn.executemany(
            "INSERT INTO changes (seq, uid, deleted, task) VALUES (?, ?, 0, ?)",
            [(t.seq, t.uid, f"[{t.uid},{_string(t.index_uid)},{int(t.status)},{int(t.type)},null,{_string(d)},null,"
                            f"{t.enqueued_at},null,null,{t.seq}]")
             for t, d in zip(tasks, details)])

    def changes_after(self, seq: int, limit: int) -> tuple[list[Task], frozenset[int]]:
        """Up to `limit` logged changes after `seq`, in order, and which of them are deletions."""
        rows = self.conn.execute(
            "SELECT deleted, task FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)).fetchall()
        tasks = [row_to_task(loads(task)) for _, task in rows]
        return tasks, frozenset(t.uid for t, (deleted, _) in zip(tasks, rows) if deleted)

    def oldest_change(self) -> int | None:
        return self.conn.execute("SELECT MIN(seq) FROM changes").fetchone()[0]

    def prune_changes(self, keep: int) -> int:
        """Drops all but the newest `keep` changes; answers how many went."""
        with self.atomic():
            return self.conn.execute("DELETE FROM changes WHERE seq <= ?", (self.last_seq() - keep,)).rowcount
