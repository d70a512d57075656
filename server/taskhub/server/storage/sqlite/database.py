"""The SQLite storage: one database file in WAL mode, opened and migrated on construction.

Every unit of work is one `BEGIN IMMEDIATE` transaction: SQLite takes its one write
lock at the start, so units of work from any process on the file never interleave,
and sequence numbers (a counter bumped inside them) follow commit order. A storage's
writer is used from one thread at a time; `reader()` opens read-only connections,
one per thread, that read the newest committed state beside the writer (WAL).
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
from collections.abc import Callable, Iterator

from taskhub.server.storage.contract import Changes, StorageFull
from taskhub.server.storage.sqlite.batch_finder import SqliteBatchFinder
from taskhub.server.storage.sqlite.batches import SqliteBatches
from taskhub.server.storage.sqlite.changes import SqliteChangeLog
from taskhub.server.storage.sqlite.idempotency import SqliteIdempotency
from taskhub.server.storage.sqlite.keys import SqliteKeys
from taskhub.server.storage.sqlite.leases import SqliteLeases
from taskhub.server.storage.sqlite.replicas import SqliteReplicas
from taskhub.server.storage.sqlite.schema import SCHEMA_VERSION, migrate, new_epoch
from taskhub.server.storage.sqlite.task_types import SqliteTaskTypes
from taskhub.server.storage.sqlite.tasks import SqliteTasks
from taskhub.server.storage.sqlite.webhooks import SqliteWebhooks

READ_MMAP_BYTES = 1 << 30


class _Tables:
    """The tables of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection, atomic) -> None:
        self.conn = conn
        self.task_types = SqliteTaskTypes(conn)
        self.log = SqliteChangeLog(conn, atomic, self.task_types.codes)
        self.tasks = SqliteTasks(conn, self.log)
        self.leases = SqliteLeases(conn, self.tasks)
        self.keys = SqliteKeys(conn)
        self.idempotency = SqliteIdempotency(conn)
        self.batches = SqliteBatches(conn, self.task_types.codes)
        self.webhooks = SqliteWebhooks(conn)
        self.batch_finder = SqliteBatchFinder(conn)

    @property
    def changes(self) -> Changes:
        return self.log.changes

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads in the block see one committed state (a read transaction)."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def used_bytes(self) -> int:
        """Bytes the database uses; free pages, which SQLite reuses, do not count."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.conn.execute("PRAGMA page_size").fetchone()[0]


class SqliteReader(_Tables):
    """A read-only connection (`query_only`): every read of the contract, no write."""

    def __init__(self, path: str, *, scan: bool = False) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")
        if not scan:
            # Reads through a memory map, not a pread per page: a point read skips a system call
            # and a copy. Address space only; the pages are the OS's file cache. Not for a scan:
            # every page it touched would stay mapped, counted in the process's resident memory.
            conn.execute(f"PRAGMA mmap_size={READ_MMAP_BYTES}")
        conn.execute("PRAGMA busy_timeout=5000")
        super().__init__(conn, self.snapshot)

    def close(self) -> None:
        self.conn.close()


class SqliteStorage(_Tables):
    """Tasks in one SQLite file; `max_bytes` is a hard cap past which writes fail (StorageFull)."""

    def __init__(self, path: str | pathlib.Path, *, max_bytes: int | None = None) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            pathlib.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        super().__init__(conn, self.transaction)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged enqueue survives power loss, not only a crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        if max_bytes is not None:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={max(int(max_bytes) // page_size, 1)}")
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            with self.transaction():  # checked again under the write lock: another process may have migrated
                migrate(conn)
            self.task_types.codes.reload()
        self.replicas = SqliteReplicas(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqliteStorage]:
        self.log.logged = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self.log.logged = []
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise StorageFull(str(exc)) from exc
            raise

    def reader(self, *, scan: bool = False) -> SqliteReader:
        return SqliteReader(self.path, scan=scan)

    def renew_epoch(self) -> None:
        with self.transaction():
            new_epoch(self.conn)

    def follow_commits(self, wake: Callable[[int | None], None]) -> Callable[[], None]:
        """Nothing: one server serves a file, and other processes' commits (tools) are found by polling."""
        return lambda: None

    def backup(self, target: str | pathlib.Path) -> None:
        with contextlib.closing(sqlite3.connect(str(target))) as copy:
            self.conn.backup(copy)

    def close(self) -> None:
        """Folds the WAL back into the database file, so a stopped server leaves one clean file."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()
