"""The PostgreSQL task table: rows by uid, the sets cancelations and deletions matched, dumps in.

As in SQLite, rows are only looked up by uid (the finder answers which tasks match a
filter), and every write logs the new states in the same unit of work. Each row keeps its
`size` and a `stored_bytes` counter their sum, for the queue-full rule: PostgreSQL reuses a
deleted row's space inside its files (once vacuumed) without the files shrinking, so what
the rows hold, not the files' size, says how full the queue is.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence

from taskhub.server.model import Task, TaskStatus, TaskType
from taskhub.server.storage.contract import KEEP, IndexRow, Keep, NewTask
from taskhub.server.storage.postgres.changes import APPEND, PostgresChangeLog
from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.postgres.rows import bump, counter, set_counter
from taskhub.server.storage.postgres.schema import new_epoch
from taskhub.server.storage.postgres.statistics import analyze
from taskhub.server.storage.rows import COLUMNS, ROW_BYTES, dumps, row_to_task, waiting_until

# `COLUMNS` with no details nor error: what a deletion keeps of a task's last state.
DELETED_COLUMNS = (
    "uid, index_uid, status, type, canceled_by, NULL, NULL, enqueued_at, started_at, finished_at, seq, extra"
)

# What a start reads (tests/test_postgres_plans.py checks their plans take the indexes).
WAITING = "SELECT uid, run_at FROM tasks WHERE run_at IS NOT NULL ORDER BY uid"
INDEX_ROWS = (
    "SELECT uid, status, type, COALESCE(canceled_by, -1), enqueued_at, COALESCE(started_at, -1),"
    " COALESCE(finished_at, -1), index_uid FROM tasks WHERE uid > %s ORDER BY uid LIMIT %s"
)


def _statuses(statuses: frozenset[TaskStatus]) -> list[int]:
    return [int(s) for s in statuses]


def _size(details: str | None, error: str | None, extra: str | None) -> int:
    """A row's share of the queue-full limit: its JSON and ROW_BYTES for the rest."""
    return ROW_BYTES + len(details or "") + len(error or "") + len(extra or "")


class PostgresTasks:
    """The `TaskTable` of the contract on one connection."""

    def __init__(self, conn: Connection, log: PostgresChangeLog) -> None:
        self.conn = conn
        self.log = log
        self.type_of = log.type_of

    def next_uid(self) -> int:
        return counter(self.conn, "next_uid")

    def count(self) -> int:
        return counter(self.conn, "task_count")

    # -- reads ------------------------------------------------------------

    def get(self, uid: int) -> Task | None:
        row = self.conn.execute(f"SELECT {COLUMNS} FROM tasks WHERE uid = %s", (uid,)).fetchone()
        return None if row is None else row_to_task(row, self.type_of)

    def get_many(self, uids: Iterable[int], statuses: frozenset[TaskStatus] | None = None) -> list[Task]:
        uids = list(uids)
        if not uids:
            return []  # a round trip saved: the batch finder asks for the swaps running, most often none
        where = "" if statuses is None else " AND status = ANY(%s)"
        params: tuple = (uids,) if statuses is None else (uids, _statuses(statuses))
        rows = self.conn.execute(f"SELECT {COLUMNS} FROM tasks WHERE uid = ANY(%s){where} ORDER BY uid", params)
        return [row_to_task(r, self.type_of) for r in rows]

    def leased(self, token: str) -> list[Task]:
        """The tasks a lease holds, in uid order (through the partial index of leased tasks)."""
        rows = self.conn.execute(
            f"SELECT {COLUMNS} FROM tasks WHERE lease = %s AND status = %s ORDER BY uid",
            (token, int(TaskStatus.PROCESSING)),
        )
        return [row_to_task(r, self.type_of) for r in rows]

    def get_page(self, uids: list[int], budget: int) -> tuple[list[Task], int | None]:
        """See the contract; sized as SQLite's: the stored JSON of details and error plus ROW_BYTES a task."""
        order = "DESC" if len(uids) > 1 and uids[0] > uids[1] else "ASC"
        tasks: list[Task] = []
        used = 0
        rows = self.conn.execute(f"SELECT {COLUMNS} FROM tasks WHERE uid = ANY(%s) ORDER BY uid {order}", (uids,))
        for row in rows:
            details, error, extra = row[5], row[6], row[11]
            used += ROW_BYTES + len(details or "") + len(error or "") + len(extra or "")
            if used > budget and tasks:
                return tasks, row[0]
            tasks.append(row_to_task(row, self.type_of))
        return tasks, None

    def matched_uids(self, uid: int) -> list[int]:
        row = self.conn.execute("SELECT uids FROM matches WHERE uid = %s", (uid,)).fetchone()
        matched = array("I")
        if row is not None:
            matched.frombytes(bytes(row[0]))
        return matched.tolist()

    def waiting(self) -> list[tuple[int, int]]:
        # The partial index holds only tasks enqueued with a runAt: a start reads those, never every row.
        return [(uid, run_at) for uid, run_at in self.conn.execute(WAITING)]

    def index_rows(self, after_uid: int, limit: int) -> list[IndexRow]:
        return self.conn.execute(INDEX_ROWS, (after_uid, limit)).fetchall()

    def iter_tasks(self, batch: int = 1_000) -> Iterator[tuple[Task, list[int] | None]]:
        last = -1
        while True:
            rows = self.conn.execute(
                f"SELECT {COLUMNS} FROM tasks WHERE uid > %s ORDER BY uid LIMIT %s", (last, batch)
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
        """Counters bumped once, rows and change-log entries written by one statement."""
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
        encoded: list[tuple[str | None, str | None, str | None]] = [
            (dumps(task.details), None, dumps(task.extra)) for task in tasks
        ]
        # One statement over arrays, not a statement a row, that writes the log too: one round trip.
        self.conn.execute(
            f"WITH {APPEND}"
            "INSERT INTO tasks (uid, index_uid, status, type, details, enqueued_at, seq, extra, size, run_at)"
            " SELECT v.uid, v.index_uid, %s, v.type, v.details, %s, v.seq, v.extra, v.size, v.run_at"
            " FROM unnest(%s::bigint[], %s::text[], %s::integer[], %s::text[], %s::bigint[], %s::text[],"
            " %s::integer[], %s::bigint[]) AS v(uid, index_uid, type, details, seq, extra, size, run_at)",
            (
                *self.log.appending(tasks, encoded),
                int(TaskStatus.ENQUEUED),
                now,
                [t.uid for t in tasks],
                [t.index_uid for t in tasks],
                [int(t.type) for t in tasks],
                [d for d, _, _ in encoded],
                [t.seq for t in tasks],
                [x for _, _, x in encoded],
                [_size(d, None, x) for d, _, x in encoded],
                [waiting_until(t) for t in tasks],
            ),
        )
        bump(self.conn, "stored_bytes", sum(_size(*e) for e in encoded))
        return tasks

    def save(self, tasks: list[Task], *, lease: str | Keep | None = KEEP) -> list[Task]:
        if not tasks:
            return tasks
        self.log.sequence(tasks)
        encoded = [(dumps(task.details), dumps(task.error), dumps(task.extra)) for task in tasks]
        lease_column, lease_value = ("", ()) if isinstance(lease, Keep) else (", lease = %s", (lease,))
        uids = [t.uid for t in tasks]
        if len(set(uids)) == len(uids):
            grown = self._update(tasks, encoded, lease_column, lease_value)  # the log written along
        else:  # one task twice: each state in turn, as the log has them
            grown = self._update_each(tasks, encoded, lease_column, lease_value)
            self.log.append(tasks, encoded)
        if grown:
            bump(self.conn, "stored_bytes", grown)
        return tasks

    def _update(self, tasks: list[Task], encoded: list, lease_column: str, lease_value: tuple) -> int:
        """Every row and its log entry in one statement over arrays; answers how many bytes the rows grew by.

        The statement's parts see the table as it was before it: `old` sums the rows' sizes before.
        """
        row = self.conn.execute(
            f"WITH {APPEND}, v AS (SELECT * FROM unnest(%s::bigint[], %s::smallint[], %s::bigint[], %s::text[], %s::text[],"
            " %s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::integer[], %s::bigint[])"
            " AS v(uid, status, canceled_by, details, error, started_at, finished_at, seq, extra, size, run_at)),"
            " old AS (SELECT COALESCE(SUM(t.size), 0) AS size FROM tasks t JOIN v ON t.uid = v.uid),"
            " up AS (UPDATE tasks t SET status = v.status, canceled_by = v.canceled_by, details = v.details,"
            " error = v.error, started_at = v.started_at, finished_at = v.finished_at, seq = v.seq,"
            f" extra = v.extra, size = v.size, run_at = v.run_at{lease_column} FROM v WHERE t.uid = v.uid"
            " RETURNING t.size)"
            " SELECT COALESCE((SELECT SUM(size) FROM up), 0) - (SELECT size FROM old)",
            (
                *self.log.appending(tasks, encoded),
                [t.uid for t in tasks],
                [int(t.status) for t in tasks],
                [t.canceled_by for t in tasks],
                [d for d, _, _ in encoded],
                [e for _, e, _ in encoded],
                [t.started_at for t in tasks],
                [t.finished_at for t in tasks],
                [t.seq for t in tasks],
                [x for _, _, x in encoded],
                [_size(d, e, x) for d, e, x in encoded],
                [waiting_until(t) for t in tasks],
                *lease_value,
            ),
        ).fetchone()
        return int(row[0]) if row else 0

    def _update_each(self, tasks: list[Task], encoded: list, lease_column: str, lease_value: tuple) -> int:
        grown = 0
        with self.conn.cursor() as cursor:
            # The FROM side reads the row as it was before the statement: its old size.
            cursor.executemany(
                "UPDATE tasks t SET status = %s, canceled_by = %s, details = %s, error = %s, started_at = %s,"
                f" finished_at = %s, seq = %s, extra = %s, size = %s, run_at = %s{lease_column}"
                " FROM (SELECT uid, size AS before FROM tasks WHERE uid = %s) o WHERE t.uid = o.uid"
                " RETURNING t.size - o.before",
                [
                    (
                        *(int(t.status), t.canceled_by, d, e, t.started_at, t.finished_at, t.seq, x),
                        *(_size(d, e, x), waiting_until(t), *lease_value, t.uid),
                    )
                    for t, (d, e, x) in zip(tasks, encoded)
                ],
                returning=True,
            )
            while True:
                row = cursor.fetchone()
                grown += row[0] if row else 0
                if not cursor.nextset():
                    break
        return grown

    def delete(self, uids: Iterable[int], statuses: frozenset[TaskStatus]) -> list[Task]:
        rows = self.conn.execute(
            f"DELETE FROM tasks WHERE uid = ANY(%s) AND status = ANY(%s) RETURNING {DELETED_COLUMNS}, size",
            (list(uids), _statuses(statuses)),
        ).fetchall()
        deleted = sorted((row_to_task(r[:-1], self.type_of) for r in rows), key=lambda t: t.uid)
        if deleted:
            bump(self.conn, "stored_bytes", -sum(r[-1] for r in rows))
            self.log.sequence(deleted)
            self.log.append(deleted, deleted=True)
            bump(self.conn, "task_count", -len(deleted))
        return deleted

    def save_matches(self, uid: int, matched: Sequence[int]) -> None:
        self.conn.execute("INSERT INTO matches (uid, uids) VALUES (%s, %s)", (uid, array("I", matched).tobytes()))

    def forget_matches(self, uids: Iterable[int]) -> None:
        self.conn.execute("DELETE FROM matches WHERE uid = ANY(%s)", (sorted(uids),))

    def load(self, tasks: Iterable[tuple[Task, list[int] | None]], next_uid: int) -> int:
        if self.conn.execute("SELECT EXISTS (SELECT 1 FROM tasks)").fetchone()[0]:  # type: ignore[index]
            raise ValueError("a dump can only be imported into an empty database")
        count = stored = 0
        placeholders = ", ".join(["%s"] * 14)
        for task, matched in tasks:
            task.seq = 0  # imported, not changed: the change log starts after the import
            details, error, extra = dumps(task.details), dumps(task.error), dumps(task.extra)
            stored += _size(details, error, extra)
            self.conn.execute(
                f"INSERT INTO tasks ({COLUMNS}, size, run_at) VALUES ({placeholders})",
                (
                    task.uid,
                    task.index_uid,
                    int(task.status),
                    int(task.type),
                    task.canceled_by,
                    details,
                    error,
                    task.enqueued_at,
                    task.started_at,
                    task.finished_at,
                    task.seq,
                    extra,
                    _size(details, error, extra),
                    waiting_until(task),
                ),
            )
            if matched is not None:
                self.save_matches(task.uid, matched)
            count += 1
            next_uid = max(next_uid, task.uid + 1)
        set_counter(self.conn, "next_uid", next_uid)
        bump(self.conn, "task_count", count)
        bump(self.conn, "stored_bytes", stored)
        new_epoch(self.conn)  # the history restarts: an index saved before must not be applied to it
        analyze(self.conn)  # the planner's statistics of a table filled at once, before anything reads it
        return count
