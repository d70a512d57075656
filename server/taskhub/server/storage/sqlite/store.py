"""The SQLite store: the only module with SQL in it.

It keeps tasks, the task sets matched by cancelations and deletions, and two
counters (the next uid and the last change sequence). Every state change is one
`BEGIN IMMEDIATE` transaction through `atomic()`, and every write method returns
the tasks it changed so the scheduler can tell watchers after the commit.
A `Store` is used from one thread at a time (the scheduler's store thread).

Which tasks have which status, type, index or date is answered by `index`, the
in-memory `TaskIndex` the store keeps in step after every commit (from what the
change log saw), not by SQL indexes: rows are only ever looked up by uid, so an
enqueue writes the row, its change and nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sqlite3
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator

import sqlite_utils

from taskhub.errors import TaskHubError
from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import SERVER_PRIORITY, Task, TaskQuery, TaskStatus, TaskType, finished_details
from taskhub.server.storage.sqlite.bulk_store import BulkStore
from taskhub.server.storage.sqlite.change_log import ChangeLog
from taskhub.server.storage.sqlite.key_store import KeyStore
from taskhub.server.storage.sqlite.lease_store import LeaseStore
from taskhub.server.storage.sqlite.rows import COLUMNS, FINISHED, UNFINISHED, Changes, dumps, row_to_task

SCHEMA_VERSION = 3
DISK_FULL = (
    "taskhub cannot receive write operations because the limit of the task database has been reached."
    " Please delete tasks to continue performing write operations."
)
READ_MMAP_BYTES = 1 << 30
# `COLUMNS` with no details nor error: what a deletion keeps of a task's last state.
DELETED_COLUMNS = "uid, index_uid, status, type, canceled_by, NULL, NULL, enqueued_at, started_at, finished_at, seq"
# `_save(task)` leaves the task's lease as it is unless told otherwise.
KEEP = object()


# Up to this many uids are read with a statement of their own size: few enough statements
# that the connection's statement cache (128) keeps them prepared beside the others.
_FEW = 32
_SELECT_FEW = [f"SELECT {COLUMNS} FROM tasks WHERE uid IN ({', '.join('?' * n)}) ORDER BY uid" for n in range(_FEW + 1)]
_SELECT_FEW_DESC = [
    f"SELECT {COLUMNS} FROM tasks WHERE uid IN ({', '.join('?' * n)}) ORDER BY uid DESC" for n in range(_FEW + 1)
]
# What a task costs in a page beside its details and error (uid, dates, index uid, ...), as an upper bound.
ROW_BYTES = 512


class Store(LeaseStore, KeyStore, ChangeLog, BulkStore):
    """Tasks in one SQLite file (WAL), opened and migrated on construction."""

    def __init__(self, path: str | pathlib.Path, *, max_bytes: int | None = None, reader: bool = False) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            pathlib.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves in atomic().
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._index: TaskIndex | None = None
        # Held while the index changes (on the store thread) and while the event loop reads it.
        self.index_lock = threading.Lock()
        # What the change log saw in the open transaction: (task, deleted), for the index at commit.
        self._logged: list[tuple[Task, bool]] = []
        self.reader = reader
        if reader:
            # A second connection for reads beside the writer; WAL lets it read committed
            # data while the writer works, and query_only keeps it from ever writing.
            self.conn.execute("PRAGMA query_only=1")
            # Reads through a memory map, not a pread per page: a point read skips a system call
            # and a copy (GetTask, a list's page of rows). Address space only; the pages are the
            # OS's file cache.
            self.conn.execute(f"PRAGMA mmap_size={READ_MMAP_BYTES}")
            return
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged enqueue survives power loss, not only a crash.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        if max_bytes is not None:
            # A hard cap from SQLite itself: past it, writes fail with SQLITE_FULL.
            page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
            self.conn.execute(f"PRAGMA max_page_count={max(int(max_bytes) // page_size, 1)}")
        self._migrate()

    def open_reader(self) -> Store:
        """Another connection to the same database, for reads only (one thread at a time)."""
        return Store(self.path, reader=True)

    def close(self) -> None:
        """Folds the WAL back into the database file, so a stopped server leaves one clean file."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back whole if anything in it fails. The index follows each commit."""
        self._logged = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            self._logged = []
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise TaskHubError("no_space_left_on_device", DISK_FULL) from exc
            raise
        logged, self._logged = self._logged, []
        if logged and self._index is not None:
            with self.index_lock:
                self._index.apply(
                    [task for task, _ in logged], frozenset(task.uid for task, deleted in logged if deleted)
                )

    @property
    def index(self) -> TaskIndex:
        """Which tasks have which fields, in memory: read from the rows on first use, then kept in step."""
        assert not self.reader, "only the writing connection keeps an index"
        if self._index is None:
            index, after = TaskIndex(), -1
            while rows := self.index_rows(after, 100_000):
                index.load(rows)
                after = rows[-1][0]
            with self.index_lock:
                self._index = index
        return self._index

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        with self.atomic():
            if version == 0:
                self._create_tables()
            if version < 2:
                # Version 1 indexed eight task columns; the in-memory index answers those now, and
                # each SQL index made every enqueue write more pages. Only leases are found by SQL.
                for name in (
                    "status_uid",
                    "type_status",
                    "index_uid_uid",
                    "canceled_by",
                    "enqueued_at",
                    "started_at",
                    "finished_at",
                    "lease",
                ):
                    self.conn.execute(f"DROP INDEX IF EXISTS idx_tasks_{name}")
                # Partial: a task is in it only while leased, so an enqueue never touches it.
                self.conn.execute("CREATE INDEX idx_tasks_leased ON tasks (lease) WHERE lease IS NOT NULL")
            if version < 3:
                # Version 3 counts the change log's bytes, for its byte budget: once here, then as it goes.
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) SELECT 'change_bytes', COALESCE(SUM(length(task)), 0)"
                    " FROM changes"
                )
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _create_tables(self) -> None:
        db = sqlite_utils.Database(self.conn)
        db["tasks"].create(
            {
                "uid": int,
                "index_uid": str,
                "status": int,
                "type": int,
                "canceled_by": int,
                "details": str,
                "error": str,
                "enqueued_at": int,
                "started_at": int,
                "finished_at": int,
                "seq": int,
                "lease": str,
                "attempts": int,
            },
            pk="uid",
            not_null={"status", "type", "enqueued_at", "seq", "attempts"},
            defaults={"attempts": 0},
        )
        db["leases"].create(
            {"token": str, "worker": str, "deadline": int, "duration": int, "state": str},
            pk="token",
            not_null={"deadline", "duration", "state"},
        )
        db["leases"].create_index(["state", "deadline"])
        # The uids a cancelation or deletion matched when it was enqueued.
        db["matches"].create({"uid": int, "uids": bytes}, pk="uid", not_null={"uids"})
        # Every committed change in sequence order, kept for watchers that resume.
        db["changes"].create(
            {"seq": int, "uid": int, "deleted": int, "task": str}, pk="seq", not_null={"uid", "deleted", "task"}
        )
        db["api_keys"].create(
            {
                "uid": str,
                "name": str,
                "description": str,
                "actions": str,
                "indexes": str,
                "expires_at": int,
                "created_at": int,
                "updated_at": int,
            },
            pk="uid",
            not_null={"actions", "indexes", "created_at", "updated_at"},
        )
        db["meta"].create({"key": str, "value": int}, pk="key", not_null={"value"})
        db["meta"].insert_all(
            [{"key": "next_uid", "value": 0}, {"key": "last_seq", "value": 0}, {"key": "task_count", "value": 0}]
        )

    # -- counters ---------------------------------------------------------

    def _bump(self, key: str, by: int = 1) -> int:
        """Adds `by` to a counter and returns its value before the addition."""
        (after,) = self.conn.execute(
            "UPDATE meta SET value = value + ? WHERE key = ? RETURNING value", (by, key)
        ).fetchone()
        return after - by

    def task_count(self) -> int:
        return self.conn.execute("SELECT value FROM meta WHERE key = 'task_count'").fetchone()[0]

    def used_bytes(self) -> int:
        """Bytes the database uses; free pages, which SQLite reuses, do not count."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.conn.execute("PRAGMA page_size").fetchone()[0]

    def oldest_finished(self, limit: int) -> list[tuple[int, int]]:
        """(uid, enqueued_at) of the `limit` oldest finished tasks, for the automatic cleanup."""
        index = self.index
        finished = index.select(TaskQuery(statuses=frozenset(map(TaskStatus, FINISHED))))
        return [(uid, index.enqueued_at(uid)) for uid in finished[:limit]]

    # -- reads ------------------------------------------------------------

    def get_task(self, uid: int) -> Task | None:
        row = self.conn.execute(f"SELECT {COLUMNS} FROM tasks WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else row_to_task(row)

    def get_tasks(self, uids: Iterable[int]) -> list[Task]:
        """The tasks of these uids that exist, by uid."""
        uids = list(uids)
        if len(uids) <= _FEW:  # a page: one placeholder a uid, no JSON to encode and walk (bench/README.md)
            rows = self.conn.execute(_SELECT_FEW[len(uids)], uids)
        else:
            rows = self.conn.execute(
                f"SELECT {COLUMNS} FROM tasks WHERE uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (json.dumps(uids),),
            )
        return [row_to_task(r) for r in rows]

    def get_page(self, uids: list[int], budget: int) -> tuple[list[Task], int | None]:
        """The tasks of `uids` (sorted one way), in that order, until their stored size passes `budget`.

        Answers the tasks and the uid of the first task left out for size (None if none was).
        The size is the stored JSON of details and error plus ROW_BYTES a task: rows past the
        budget are never read into memory, and the first task always fits, however big.
        """
        descending = len(uids) > 1 and uids[0] > uids[1]
        select = _SELECT_FEW_DESC if descending else _SELECT_FEW
        tasks, used = [], 0
        for start in range(0, len(uids), _FEW):
            chunk = uids[start : start + _FEW]
            for row in self.conn.execute(select[len(chunk)], chunk):
                details, error = row[5], row[6]
                used += ROW_BYTES + (len(details) if details else 0) + (len(error) if error else 0)
                if used > budget and tasks:
                    return tasks, row[0]
                tasks.append(row_to_task(row))
        return tasks, None

    def next_server_task(self) -> Task | None:
        """The enqueued server-run task to run first: cancelations newest first, then by type, oldest first."""
        for type_ in SERVER_PRIORITY:
            waiting = self.index.select(TaskQuery(statuses=frozenset({TaskStatus.ENQUEUED}), types=frozenset({type_})))
            if waiting:
                return self.get_task(waiting.max() if type_ == TaskType.TASK_CANCELATION else waiting.min())
        return None

    def matched_uids(self, uid: int) -> array:
        row = self.conn.execute("SELECT uids FROM matches WHERE uid = ?", (uid,)).fetchone()
        matched = array("I")
        if row is not None:
            matched.frombytes(row[0])
        return matched

    # -- writes -----------------------------------------------------------

    def _insert(self, index_uid: str | None, type_: TaskType, details: dict | None, now: int) -> Task:
        return self._insert_many([(index_uid, type_, details)], now)[0]

    def _insert_many(self, items: list[tuple[str | None, TaskType, dict | None]], now: int) -> list[Task]:
        """New enqueued tasks: counters bumped once, rows and change-log entries written in bulk."""
        count = len(items)
        self._bump("task_count", count)
        first_uid, first_seq = self._bump("next_uid", count), self._bump("last_seq", count) + 1
        tasks = [
            Task(
                uid=first_uid + i,
                index_uid=index_uid,
                status=TaskStatus.ENQUEUED,
                type=type_,
                details=details,
                enqueued_at=now,
                seq=first_seq + i,
            )
            for i, (index_uid, type_, details) in enumerate(items)
        ]
        encoded = [dumps(task.details) for task in tasks]
        self.conn.executemany(
            "INSERT INTO tasks (uid, index_uid, status, type, details, enqueued_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(t.uid, t.index_uid, int(t.status), int(t.type), d, now, t.seq) for t, d in zip(tasks, encoded)],
        )
        self._log_many(tasks, encoded)
        return tasks

    def insert_task(self, index_uid: str | None, type_: TaskType, details: dict | None, now: int) -> Changes:
        return self.insert_tasks([(index_uid, type_, details)], now)

    def insert_tasks(
        self, items: list[tuple[str | None, TaskType, dict | None]], now: int, *, max_bytes: int | None = None
    ) -> Changes:
        """Enqueues several tasks in one transaction (one fsync): the scheduler's group commit.

        Past `max_bytes` of used database, nothing is inserted and the queue is full.
        """
        with self.atomic():
            if max_bytes is not None and self.used_bytes() >= max_bytes:
                raise TaskHubError("no_space_left_on_device", DISK_FULL)
            return Changes(tasks=self._insert_many(items, now))

    def insert_matching_task(
        self, type_: TaskType, query: TaskQuery, details: Callable[[int], dict], now: int
    ) -> Changes:
        """Enqueues a cancelation or deletion with the set of older tasks it matches, atomically.

        `details(matched)` builds the new task's details from the matched count.
        """
        with self.atomic():
            uid = self.conn.execute("SELECT value FROM meta WHERE key = 'next_uid'").fetchone()[0]
            matched = array("I", self.index.select(dataclasses.replace(query, below_uid=uid)))
            task = self._insert(None, type_, details(len(matched)), now)
            self.conn.execute("INSERT INTO matches (uid, uids) VALUES (?, ?)", (task.uid, matched.tobytes()))
            return Changes(tasks=[task])

    def _save(self, task: Task, *, lease: str | object | None = KEEP) -> Task:
        """Writes every mutable field of `task` with a fresh change sequence."""
        return self._save_many([task], lease=lease)[0]

    def _save_many(self, tasks: list[Task], *, lease: str | object | None = KEEP) -> list[Task]:
        """`_save` for several tasks, in one statement per table: their sequence numbers follow their order."""
        if not tasks:
            return tasks
        self._sequence(tasks)
        encoded = [(dumps(task.details), dumps(task.error)) for task in tasks]
        lease_column, lease_value = ("", ()) if lease is KEEP else (", lease = ?", (lease,))
        self.conn.executemany(
            "UPDATE tasks SET status = ?, canceled_by = ?, details = ?, error = ?,"
            f" started_at = ?, finished_at = ?, seq = ?{lease_column} WHERE uid = ?",
            [
                (int(t.status), t.canceled_by, details, error, t.started_at, t.finished_at, t.seq, *lease_value, t.uid)
                for t, (details, error) in zip(tasks, encoded)
            ],
        )
        self._log_states(tasks, encoded)
        return tasks

    def _sequence(self, tasks: list[Task]) -> None:
        """Gives the tasks the next change sequence numbers, in their order."""
        first_seq = self._bump("last_seq", len(tasks)) + 1
        for i, task in enumerate(tasks):
            task.seq = first_seq + i

    def start_task(self, uid: int, now: int) -> Changes:
        with self.atomic():
            task = self.get_task(uid)
            if task is None or task.status != TaskStatus.ENQUEUED:
                return Changes()
            task.status, task.started_at = TaskStatus.PROCESSING, now
            return Changes(tasks=[self._save(task)])

    def finish_task(self, uid: int, now: int, *, details: dict | None, error: dict | None = None) -> Changes:
        """Marks a processing task succeeded (no `error`) or failed."""
        with self.atomic():
            return Changes(tasks=[self._finish(uid, now, details=details, error=error)])

    def _finish(self, uid: int, now: int, *, details: dict | None, error: dict | None) -> Task:
        task = self.get_task(uid)
        assert task is not None
        task.status = TaskStatus.FAILED if error else TaskStatus.SUCCEEDED
        task.details = finished_details(details, success=error is None)
        task.error, task.finished_at = error, now
        return self._save(task)

    def run_cancelation(self, uid: int, now: int) -> Changes:
        """Cancels the still-unfinished tasks a cancelation matched and marks it succeeded, in one transaction.

        A processing batch holding a canceled task is stopped whole: its lease
        ends and its other tasks go back to enqueued.
        """
        with self.atomic():
            canceled = self._unfinished(self.matched_uids(uid))
            for target in canceled:
                target.status, target.canceled_by, target.finished_at = TaskStatus.CANCELED, uid, now
                target.details = finished_details(target.details, success=False)
            self._save_many(canceled)
            requeued = self.cancel_leases_of(canceled)
            task = self.get_task(uid)
            assert task is not None
            done = self._finish(uid, now, details={**task.details, "canceledTasks": len(canceled)}, error=None)
            return Changes(tasks=[*canceled, *requeued, done])

    def run_deletion(self, uid: int, now: int) -> Changes:
        """Deletes the finished tasks a deletion matched and marks it succeeded, in one transaction.

        Each deleted task is a change (`deleted`) with its last state but no details nor error.
        """
        with self.atomic():
            matched = json.dumps(self.matched_uids(uid).tolist())
            # A deleted task's last state, without its details and error: a watcher needs no more to match
            # it and drop it, and a deletion then logs a few dozen bytes a task, not a copy of its payload.
            deleted = [
                row_to_task(r)
                for r in self.conn.execute(
                    f"DELETE FROM tasks WHERE uid IN (SELECT value FROM json_each(?)) AND status IN {FINISHED}"
                    f" RETURNING {DELETED_COLUMNS}",
                    (matched,),
                ).fetchall()
            ]
            deleted.sort(key=lambda t: t.uid)
            if deleted:
                self._sequence(deleted)
                self._log_states(deleted, deleted=True)
            gone = frozenset(t.uid for t in deleted)
            self._bump("task_count", -len(gone))
            self.conn.execute(
                "DELETE FROM matches WHERE uid IN (SELECT value FROM json_each(?))", (json.dumps(sorted(gone)),)
            )
            task = self.get_task(uid)
            assert task is not None
            done = self._finish(uid, now, details={**task.details, "deletedTasks": len(deleted)}, error=None)
            return Changes(tasks=[*deleted, done], deleted=gone)

    def _unfinished(self, uids: array) -> list[Task]:
        rows = self.conn.execute(
            f"SELECT {COLUMNS} FROM tasks WHERE uid IN (SELECT value FROM json_each(?))"
            f" AND status IN {UNFINISHED} ORDER BY uid",
            (json.dumps(uids.tolist()),),
        )
        return [row_to_task(r) for r in rows]

    def requeue_processing(self) -> Changes:
        """On start: whatever was processing when the server stopped is enqueued again, and leases are lost."""
        with self.atomic():
            self.lose_all_leases()
            processing = self.index.select(TaskQuery(statuses=frozenset({TaskStatus.PROCESSING})))
            return Changes(tasks=self._requeue(self.get_tasks(processing)))
