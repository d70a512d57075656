"""The SQLite change log: every committed task state, under its sequence number.

Each change is appended in the transaction that makes it, so a watcher that resumes
from a sequence number, or an index that follows the log, replays exactly what was
committed. `last_seq` is a counter in `meta` bumped inside the writing transaction:
SQLite has one writer at a time, so sequence numbers follow commit order with no gap,
across processes too. `prune_changes` keeps the newest ones only, within a count and a
byte budget (a `change_bytes` counter follows the logged bytes).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from taskhub.server.model import Task, TaskKind
from taskhub.server.storage.contract import Changes
from taskhub.server.storage.rows import compact, dumps, loads, logged, row_to_task
from taskhub.server.storage.sqlite.rows import bump, counter


def _string(value: str | None) -> str:
    return "null" if value is None else compact(value)


class SqliteChangeLog:
    """The `ChangeLog` of the contract on one connection; `logged` is what the open transaction appended."""

    def __init__(
        self, conn: sqlite3.Connection, atomic: Callable[[], AbstractContextManager], type_of: dict[int, TaskKind]
    ) -> None:
        self.conn = conn
        self.type_of = type_of
        self._atomic = atomic
        self.logged: list[tuple[Task, bool]] = []

    @property
    def changes(self) -> Changes:
        return Changes(
            tasks=[task for task, _ in self.logged],
            deleted=frozenset(task.uid for task, deleted in self.logged if deleted),
        )

    def last_seq(self) -> int:
        return counter(self.conn, "last_seq")

    def epoch(self) -> str:
        return str(counter(self.conn, "epoch"))

    def sequence(self, tasks: list[Task]) -> None:
        """Gives the tasks the next sequence numbers, in their order."""
        first_seq = bump(self.conn, "last_seq", len(tasks)) + 1
        for i, task in enumerate(tasks):
            task.seq = first_seq + i

    def append(
        self,
        tasks: list[Task],
        encoded: list[tuple[str | None, str | None, str | None]] | None = None,
        *,
        deleted: bool = False,
    ) -> None:
        """Appends tasks' new (or, `deleted`, last) states under their sequence numbers, in one statement.

        `encoded` may hold their (details, error, extra) already as JSON, as the row update wrote them.
        """
        if encoded is None:
            encoded = [(dumps(task.details), dumps(task.error), dumps(task.extra)) for task in tasks]
        self.logged += ((task, deleted) for task in tasks)
        rows = [
            (
                t.seq,
                t.uid,
                int(deleted),
                logged(t, details, error, extra),
            )
            for t, (details, error, extra) in zip(tasks, encoded)
        ]
        self.conn.executemany("INSERT INTO changes (seq, uid, deleted, task) VALUES (?, ?, ?, ?)", rows)
        bump(self.conn, "change_bytes", sum(len(row[3]) for row in rows))

    def append_new(self, tasks: list[Task], encoded: list[tuple[str | None, str | None]]) -> None:
        """Appends new enqueued tasks in bulk; `encoded` holds their (details, extra) already as JSON."""
        self.logged += ((task, False) for task in tasks)
        # The same row `_log_states` writes, put together by hand: only the two strings need encoding.
        rows = [
            (
                t.seq,
                t.uid,
                f"[{t.uid},{_string(t.index_uid)},{int(t.status)},{int(t.type)},null,{_string(d)},"
                f"null,{t.enqueued_at},null,null,{t.seq},{_string(x)}]",
            )
            for t, (d, x) in zip(tasks, encoded)
        ]
        self.conn.executemany("INSERT INTO changes (seq, uid, deleted, task) VALUES (?, ?, 0, ?)", rows)
        bump(self.conn, "change_bytes", sum(len(row[2]) for row in rows))

    def changes_after(self, seq: int, limit: int) -> Changes:
        """Up to `limit` logged changes after `seq`, in order."""
        rows = self.conn.execute(
            "SELECT deleted, task FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        tasks = [row_to_task(loads(task), self.type_of) for _, task in rows]
        return Changes(tasks, frozenset(t.uid for t, (deleted, _) in zip(tasks, rows) if deleted))

    def oldest_change(self) -> int | None:
        return self.conn.execute("SELECT MIN(seq) FROM changes").fetchone()[0]

    def change_bytes(self) -> int:
        """Bytes of task states the change log holds (its JSON text is ASCII: a character is a byte)."""
        return counter(self.conn, "change_bytes")

    def prune_changes(
        self,
        keep: int,
        keep_bytes: int | None = None,
        *,
        keep_after: int | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> int:
        """Drops the oldest changes until at most `keep` remain, of at most `keep_bytes`; answers how many went.

        Only ever the oldest: what stays is a gapless run up to the newest change, and a
        cursor before it is refused rather than silently skipped.
        """
        with self._atomic() as tx:
            if check is not None:
                check(tx)
            cut = self.last_seq() - keep
            if keep_after is not None:
                cut = min(cut, keep_after)
            excess = 0 if keep_bytes is None else self.change_bytes() - keep_bytes
            if excess > 0:
                # Oldest first, only as far as the excess reaches: these rows go anyway.
                freed = 0
                for seq, size in self.conn.execute("SELECT seq, length(task) FROM changes ORDER BY seq"):
                    freed += size
                    if freed >= excess:
                        cut = max(cut, seq)
                        break
            sizes = self.conn.execute("DELETE FROM changes WHERE seq <= ? RETURNING length(task)", (cut,)).fetchall()
            if sizes:  # else nothing is written: a full queue refusing task after task costs no commit each
                bump(self.conn, "change_bytes", -sum(size for (size,) in sizes))
            return len(sizes)
