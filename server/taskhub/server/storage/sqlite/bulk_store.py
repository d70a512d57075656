"""The bulk half of the SQLite store: backups, dumps in and out, and the index's first read.

`Store` inherits this mixin; these are the operations that walk or fill the whole
database rather than change one task.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
from array import array
from collections.abc import Iterable, Iterator

from taskhub.server.model import Task, TaskType
from taskhub.server.storage.sqlite.rows import COLUMNS, dumps, row_to_task


class BulkStore:
    """Whole-database SQL; mixed into `Store`, whose `conn`, `atomic`, `_bump`, `_index` and `matched_uids` it uses."""

    def backup(self, target: str | pathlib.Path) -> None:
        """A consistent copy of the whole database (SQLite online backup)."""
        with contextlib.closing(sqlite3.connect(str(target))) as copy:
            self.conn.backup(copy)

    def iter_tasks(self, batch: int = 1_000) -> Iterator[tuple[Task, array | None]]:
        """Every task in uid order with the uids it matched (cancelations and deletions)."""
        last = -1
        while True:
            rows = self.conn.execute(
                f"SELECT {COLUMNS} FROM tasks WHERE uid > ? ORDER BY uid LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                task = row_to_task(row)
                matched = None
                if task.type in (TaskType.TASK_CANCELATION, TaskType.TASK_DELETION):
                    matched = self.matched_uids(task.uid)
                yield task, matched
            last = rows[-1][0]

    def index_rows(self, after_uid: int, limit: int) -> list[tuple]:
        """A chunk of every task's filterable fields, -1 for nulls, for building the in-memory index."""
        return self.conn.execute(
            "SELECT uid, status, type, IFNULL(canceled_by, -1), enqueued_at, IFNULL(started_at, -1),"
            " IFNULL(finished_at, -1), index_uid FROM tasks WHERE uid > ? ORDER BY uid LIMIT ?",
            (after_uid, limit),
        ).fetchall()

    def next_uid(self) -> int:
        return self.conn.execute("SELECT value FROM meta WHERE key = 'next_uid'").fetchone()[0]

    def load_tasks(self, tasks: Iterable[tuple[Task, list[int] | None]], next_uid: int) -> int:
        """Fills an empty store from a dump, in one transaction; answers how many tasks it loaded."""
        with self.atomic():
            if self.conn.execute("SELECT EXISTS (SELECT 1 FROM tasks)").fetchone()[0]:
                raise ValueError("a dump can only be imported into an empty database")
            count = 0
            for task, matched in tasks:
                task.seq = 0  # imported, not changed: the change log starts after the import
                self.conn.execute(
                    f"INSERT INTO tasks ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        task.uid,
                        task.index_uid,
                        int(task.status),
                        int(task.type),
                        task.canceled_by,
                        dumps(task.details),
                        dumps(task.error),
                        task.enqueued_at,
                        task.started_at,
                        task.finished_at,
                        task.seq,
                    ),
                )
                if matched is not None:
                    self.conn.execute(
                        "INSERT INTO matches (uid, uids) VALUES (?, ?)", (task.uid, array("I", matched).tobytes())
                    )
                count += 1
                next_uid = max(next_uid, task.uid + 1)
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'next_uid'", (next_uid,))
            self._bump("task_count", count)
        self._index = None  # rows came in without the change log: the index is read again on next use
        return count
