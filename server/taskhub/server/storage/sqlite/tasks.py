"""The SQLite task table: rows by uid, the sets cancelations and deletions matched, dumps in and out.

Rows are only ever looked up by uid (which tasks match a filter is the finder's
question), so an enqueue writes its row, its change and nothing else. Every write
logs the new states through the change log it was given, in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from collections.abc import Iterable, Iterator, Sequence

from taskhub.server.model import Task, TaskStatus, TaskType
from taskhub.server.storage.contract import KEEP, IndexRow, Keep, NewTask
from taskhub.server.storage.rows import COLUMNS, ROW_BYTES, dumps, row_to_task, waiting_until
from taskhub.server.storage.sqlite.changes import SqliteChangeLog
from taskhub.server.storage.sqlite.rows import bump, counter
from taskhub.server.storage.sqlite.schema import new_epoch

# `COLUMNS` with no details nor error: what a deletion keeps of a task's last state.
DELETED_COLUMNS = (
    "uid, index_uid, status, type, canceled_by, NULL, NULL, enqueued_at, started_at, finished_at, seq, extra"
)

# Up to this many uids are read with a statement of their own size: few enough statements
# that the connection's statement cache (128) keeps them prepared beside the others.
_FEW = 32
_SELECT_FEW = [f"SELECT {COLUMNS} FROM tasks WHERE uid IN ({', '.join('?' * n)}) ORDER BY uid" for n in range(_FEW + 1)]
_SELECT_FEW_DESC = [
    f"SELECT {COLUMNS} FROM tasks WHERE uid IN ({', '.join('?' * n)}) ORDER BY uid DESC" for n in range(_FEW + 1)
]


def _in(statuses: frozenset[TaskStatus]) -> str:
    return "(" + ", ".join(str(int(s)) for s in sorted(statuses)) + ")"


class SqliteTasks:
    """The `TaskTable` of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection, log: SqliteChangeLog) -> None:
        self.conn = conn
        self.log = log
        self.type_of = log.type_of

    def next_uid(self) -> int:
        return counter(self.conn, "next_uid")

    def count(self) -> int:
        return counter(self.conn, "task_count")

    # -- reads ------------------------------------------------------------

    def get(self, uid: int) -> Task | None:
        row = self.conn.execute(f"SELECT {COLUMNS} FROM tasks WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else row_to_task(row, self.type_of)

    def get_many(self, uids: Iterable[int], statuses: frozenset[TaskStatus] | None = None) -> list[Task]:
        uids = list(uids)
        if statuses is None and len(uids) <= _FEW:  # a page: one placeholder a uid, no JSON to encode and walk
            rows = self.conn.execute(_SELECT_FEW[len(uids)], uids)
        else:
            where = "" if statuses is None else f" AND status IN {_in(statuses)}"
            rows = self.conn.execute(
                f"SELECT {COLUMNS} FROM tasks WHERE uid IN (SELECT value FROM json_each(?)){where} ORDER BY uid",
                (json.dumps(uids),),
            )
        return [row_to_task(r, self.type_of) for r in rows]

    def get_page(self, uids: list[int], budget: int) -> tuple[list[Task], int | None]:
        """See the contract. The size is the stored JSON of details and error plus ROW_BYTES a task:
        rows past the budget are never read into memory."""
        descending = len(uids) > 1 and uids[0] > uids[1]
        select = _SELECT_FEW_DESC if descending else _SELECT_FEW
        tasks: list[Task] = []
        used = 0
        for start in range(0, len(uids), _FEW):
            chunk = uids[start : start + _FEW]
            for row in self.conn.execute(select[len(chunk)], chunk):
                details, error, extra = row[5], row[6], row[11]
                used += ROW_BYTES + len(details or "") + len(error or "") + len(extra or "")
                if used > budget and tasks:
                    return tasks, row[0]
                tasks.append(row_to_task(row, self.type_of))
        return tasks, None

    def matched_uids(self, uid: int) -> list[int]:
        row = self.conn.execute("SELECT uids FROM matches WHERE uid = ?", (uid,)).fetchone()
        matched = array("I")
        if row is not None:
            matched.frombytes(row[0])
        return matched.tolist()

    def waiting(self) -> list[tuple[int, int]]:
        # The partial index holds only tasks enqueued with a runAt: a start reads those, never every row.
        return self.conn.execute(
            "SELECT uid, run_at FROM tasks INDEXED BY idx_tasks_waiting WHERE run_at IS NOT NULL ORDER BY uid"
        ).fetchall()

    def index_rows(self, after_uid: int, limit: int) -> list[IndexRow]:
        return self.conn.execute(
            "SELECT uid, status, type, IFNULL(canceled_by, -1), enqueued_at, IFNULL(started_at, -1),"
            " IFNULL(finished_at, -1), index_uid FROM tasks WHERE uid > ? ORDER BY uid LIMIT ?",
            (after_uid, limit),
        ).fetchall()

    def iter_tasks(self, batch: int = 1_000) -> Iterator[tuple[Task, list[int] | None]]:
        last = -1
        while True:
            rows = self.conn.execute(
                f"SELECT {COLUMNS} FROM tasks WHERE uid > ? ORDER BY uid LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                task = row_to_task(row, self.type_of)
                matched = None
                if task.type in (TaskType.TASK_CANCELATION, TaskType.TASK_DELETION):
                    matched = self.matched_uids(task.uid)
                yield task, matched
            last = rows[-1][0]

    # -- writes -----------------------------------------------------------

    def insert(self, items: Sequence[NewTask], now: int) -> list[Task]:
        """Counters bumped once, rows and change-log entries written in bulk."""
        count = len(items)
        bump(self.conn, "task_count", count)
        first_uid = bump(self.conn, "next_uid", count)
        tasks = [
            Task(
                uid=first_uid + i,
                index_uid=index_uid,
                status=TaskStatus.ENQUEUED,
                type=type_,
                details=details,
                enqueued_at=now,
                extra=extra,
            )
            for i, (index_uid, type_, details, extra) in enumerate(items)
        ]
        self.log.sequence(tasks)
        encoded = [(dumps(task.details), dumps(task.extra)) for task in tasks]
        self.conn.executemany(
            "INSERT INTO tasks (uid, index_uid, status, type, details, enqueued_at, seq, extra, run_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                # New tasks are enqueued: their runAt, if any, is the column (no call per task on the hot path).
                (
                    t.uid,
                    t.index_uid,
                    int(t.status),
                    int(t.type),
                    d,
                    now,
                    t.seq,
                    x,
                    t.extra.get("runAt") if t.extra else None,
                )
                for t, (d, x) in zip(tasks, encoded)
            ],
        )
        self.log.append_new(tasks, encoded)
        return tasks

    def save(self, tasks: list[Task], *, lease: str | Keep | None = KEEP) -> list[Task]:
        """One statement per table: the tasks' sequence numbers follow their order."""
        if not tasks:
            return tasks
        self.log.sequence(tasks)
        encoded = [(dumps(task.details), dumps(task.error), dumps(task.extra)) for task in tasks]
        lease_column, lease_value = ("", ()) if isinstance(lease, Keep) else (", lease = ?", (lease,))
        self.conn.executemany(
            "UPDATE tasks SET status = ?, canceled_by = ?, details = ?, error = ?,"
            f" started_at = ?, finished_at = ?, seq = ?, extra = ?, run_at = ?{lease_column} WHERE uid = ?",
            [
                (
                    int(t.status),
                    t.canceled_by,
                    d,
                    e,
                    t.started_at,
                    t.finished_at,
                    t.seq,
                    x,
                    t.extra.get("runAt") if t.extra and t.status == TaskStatus.ENQUEUED else None,
                    *lease_value,
                    t.uid,
                )
                for t, (d, e, x) in zip(tasks, encoded)
            ],
        )
        self.log.append(tasks, encoded)
        return tasks

    def delete(self, uids: Iterable[int], statuses: frozenset[TaskStatus]) -> list[Task]:
        deleted = [
            row_to_task(r, self.type_of)
            for r in self.conn.execute(
                f"DELETE FROM tasks WHERE uid IN (SELECT value FROM json_each(?)) AND status IN {_in(statuses)}"
                f" RETURNING {DELETED_COLUMNS}",
                (json.dumps(list(uids)),),
            ).fetchall()
        ]
        deleted.sort(key=lambda t: t.uid)
        if deleted:
            self.log.sequence(deleted)
            self.log.append(deleted, deleted=True)
            bump(self.conn, "task_count", -len(deleted))
        return deleted

    def save_matches(self, uid: int, matched: Sequence[int]) -> None:
        self.conn.execute("INSERT INTO matches (uid, uids) VALUES (?, ?)", (uid, array("I", matched).tobytes()))

    def forget_matches(self, uids: Iterable[int]) -> None:
        self.conn.execute(
            "DELETE FROM matches WHERE uid IN (SELECT value FROM json_each(?))", (json.dumps(sorted(uids)),)
        )

    def load(self, tasks: Iterable[tuple[Task, list[int] | None]], next_uid: int) -> int:
        if self.conn.execute("SELECT EXISTS (SELECT 1 FROM tasks)").fetchone()[0]:
            raise ValueError("a dump can only be imported into an empty database")
        count = 0
        for task, matched in tasks:
            task.seq = 0  # imported, not changed: the change log starts after the import
            self.conn.execute(
                f"INSERT INTO tasks ({COLUMNS}, run_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    dumps(task.extra),
                    waiting_until(task),
                ),
            )
            if matched is not None:
                self.save_matches(task.uid, matched)
            count += 1
            next_uid = max(next_uid, task.uid + 1)
        self.conn.execute("UPDATE meta SET value = ? WHERE key = 'next_uid'", (next_uid,))
        bump(self.conn, "task_count", count)
        new_epoch(self.conn)  # the history restarts: an index saved before must not be applied to it
        return count
