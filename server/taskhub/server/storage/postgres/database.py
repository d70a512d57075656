"""The PostgreSQL storage: the contract on one database that several servers may share.

Every unit of work is one transaction that first takes a transaction-scoped advisory lock
(`UNIT_LOCK`): units of work from every server on the database run one at a time, as
SQLite's `BEGIN IMMEDIATE` makes them, so what a unit of work read still holds when it
commits, and the sequence numbers it takes follow commit order with no gap. The lock is
held until the commit (its flush included) and no longer; a unit opens (BEGIN, the lock, its
counters) in one round trip and ends (counters, NOTIFY, COMMIT) in another. Readers are
connections of their own in autocommit mode: each read sees the newest committed state, and
`snapshot()` makes several reads see one (a repeatable-read transaction).
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

import psycopg

from taskhub.server.storage.contract import Changes, StorageFull, StorageUnavailable
from taskhub.server.storage.postgres.batch_finder import PostgresBatchFinder
from taskhub.server.storage.postgres.batches import PostgresBatches
from taskhub.server.storage.postgres.changes import PostgresChangeLog
from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.postgres.idempotency import PostgresIdempotency
from taskhub.server.storage.postgres.keys import PostgresKeys
from taskhub.server.storage.postgres.leases import PostgresLeases
from taskhub.server.storage.postgres.listener import CHANNEL, Listener
from taskhub.server.storage.postgres.lock_times import UNIT_LOCK_TIMES
from taskhub.server.storage.postgres.replicas import PostgresReplicas
from taskhub.server.storage.postgres.rows import LOAD, counter, unit_counters
from taskhub.server.storage.postgres.schema import UNIT_LOCK, migrate, new_epoch
from taskhub.server.storage.postgres.statistics import analyze_if_unknown
from taskhub.server.storage.postgres.task_types import PostgresTaskTypes
from taskhub.server.storage.postgres.tasks import PostgresTasks
from taskhub.server.storage.postgres.webhooks import PostgresWebhooks

_TABLES = (
    "tasks",
    "leases",
    "matches",
    "changes",
    "api_keys",
    "task_types",
    "idempotency_keys",
    "batches",
    "batch_tasks",
    "batch_progress",
    "webhooks",
    "webhook_outbox",
    "meta",
    # Part of the schema its version names; their rows are not (`_NOT_COPIED`).
    "leader",
    "replicas",
)
# Rows of the servers serving this database, not of its tasks: a copy is served by others.
_NOT_COPIED = ("leader", "replicas")
# A unit of work idle this long in its transaction is ended by PostgreSQL: a server stopped (SIGSTOP, a
# frozen VM) in the middle of one would otherwise hold the units' lock, and every replica with it.
IDLE_IN_UNIT = "4s"


def is_postgres_url(address: str) -> bool:
    return address.startswith(("postgresql://", "postgres://"))


class _Tables:
    """The tables of the contract on one connection."""

    def __init__(self, conn: Connection, atomic) -> None:
        self.conn = conn
        self.task_types = PostgresTaskTypes(conn)
        self.log = PostgresChangeLog(conn, atomic, self.task_types.codes)
        self.tasks = PostgresTasks(conn, self.log)
        self.leases = PostgresLeases(conn, self.tasks)
        self.keys = PostgresKeys(conn)
        self.idempotency = PostgresIdempotency(conn)
        self.batches = PostgresBatches(conn, self.task_types.codes)
        self.webhooks = PostgresWebhooks(conn)
        self.batch_finder = PostgresBatchFinder(conn)

    @property
    def changes(self) -> Changes:
        return self.log.changes

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads in the block see one committed state."""
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.conn.in_transaction = True
        try:
            yield
        finally:
            self.conn.in_transaction = False
            with contextlib.suppress(StorageUnavailable):
                self.conn.execute("COMMIT")

    def used_bytes(self) -> int:
        """Bytes the tasks and the change log hold (counters kept by every write; not the files' size, which
        PostgreSQL never shrinks when rows go)."""
        return counter(self.conn, "stored_bytes") + counter(self.conn, "change_bytes")  # in a unit, from memory


def _writer(conn: psycopg.Connection) -> None:
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_UNIT}'")


def _read_only(conn: psycopg.Connection) -> None:
    conn.execute("SET default_transaction_read_only = on")


class PostgresReader(_Tables):
    """A read-only connection: every read of the contract, no write."""

    def __init__(self, url: str) -> None:
        super().__init__(Connection(url, _read_only), self.snapshot)

    def close(self) -> None:
        self.conn.close()


class PostgresStorage(_Tables):
    """Tasks in one PostgreSQL database; past `max_bytes` of tables a unit of work is refused (StorageFull)."""

    def __init__(self, url: str, *, max_bytes: int | None = None) -> None:
        self.url = url
        self.max_bytes = max_bytes
        super().__init__(Connection(url, _writer), self.transaction)
        self.replicas = PostgresReplicas(self.conn)
        # Under the lock: servers starting at once migrate one after another (the tables may not be there yet).
        with self.transaction(load=False):
            migrate(self.conn)
        analyze_if_unknown(self.conn)  # before the index is built from the rows
        self.task_types.codes.reload()

    @contextlib.contextmanager
    def transaction(self, *, load: bool = True) -> Iterator[PostgresStorage]:
        """One unit of work. Its opening (BEGIN, the lock, the counters when `load`) is one round trip, and so is
        its end (the counters written back, NOTIFY, COMMIT): a unit's round trips are what its length is made of."""
        self.log.logged = []
        # READ COMMITTED whatever the role's default: each statement sees what was committed before it, so LOAD
        # (after the lock) sees every unit committed before this one.
        opening = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({UNIT_LOCK})" + (
            f"; {LOAD}" if load else ""
        )
        try:
            asked = time.perf_counter_ns()
            # On a connection opened again if the last one was lost (nothing was done on it yet).
            cursor = self.conn.execute(opening)
            self.conn.in_transaction = True
            locked = time.perf_counter_ns()
            while load and cursor.nextset():
                pass  # to LOAD's rows, the last result
            with unit_counters(self.conn, cursor.fetchall() if load else None) as counters:
                yield self
                if self.max_bytes is not None and self.log.logged and self.used_bytes() > self.max_bytes:
                    raise StorageFull(f"the tasks and their changes passed {self.max_bytes} bytes")
                ending = counters.write_back()
            committing = time.perf_counter_ns()
            if self.log.logged:
                # Delivered at the commit, to every server listening (their followers wake). The payload is the
                # newest sequence number, an integer.
                ending += f"NOTIFY {CHANNEL}, '{self.log.logged[-1][0].seq}'; "
            self.conn.execute(ending + "COMMIT")
            done = time.perf_counter_ns()
            UNIT_LOCK_TIMES.add(locked - asked, done - locked, done - committing)
        except BaseException as exc:
            # Also when the opening failed part way (a lock wait cut by the statement timeout): BEGIN may have run.
            with contextlib.suppress(psycopg.Error, StorageUnavailable):
                self.conn.execute("ROLLBACK")
            self.log.logged = []
            if isinstance(exc, psycopg.errors.DiskFull):
                raise StorageFull(str(exc)) from exc
            raise
        finally:
            self.conn.in_transaction = False

    def reader(self, *, scan: bool = False) -> PostgresReader:
        return PostgresReader(self.url)

    def renew_epoch(self) -> None:
        with self.transaction():
            new_epoch(self.conn)

    def follow_commits(self, wake: Callable[[int | None], None]) -> Callable[[], None]:
        """A LISTEN connection of its own wakes `wake` at every commit that logged changes, from any server."""
        return Listener(self.url, wake).stop

    def backup(self, target: str | pathlib.Path) -> None:
        """A consistent copy in pg_dump's custom format (restore it with pg_restore into an empty database)."""
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            raise RuntimeError("pg_dump is not installed: a snapshot of a PostgreSQL database needs it")
        tables = [arg for table in _TABLES for arg in ("--table", table)]
        tables += [f"--exclude-table-data={table}" for table in _NOT_COPIED]
        subprocess.run(
            [pg_dump, "--format=custom", "--no-owner", *tables, "--file", str(target), self.url],
            check=True,
            capture_output=True,
        )

    def close(self) -> None:
        self.conn.close()
