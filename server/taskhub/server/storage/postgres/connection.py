"""A PostgreSQL connection that comes back: the tables' one handle on the database.

A server outlives its connections (a database restart, a failover, a backend ended by an
operator). A statement outside a transaction (a read, a unit of work's BEGIN) that finds its
connection lost runs once more on a new one. Inside a transaction nothing reconnects: the
transaction is gone, and its unit of work fails whole with `StorageUnavailable` (`unavailable`,
503: the clients retry, an enqueue under its idempotency key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from taskhub.server.storage.contract import StorageUnavailable


class Connection:
    """`execute` and `cursor` as psycopg's, on the current connection; `setup` runs on each new one."""

    def __init__(self, url: str, setup: Callable[[psycopg.Connection], None] = lambda conn: None) -> None:
        self.url = url
        self._setup = setup
        self.in_transaction = False
        self._closed = False  # by `close()`: for good, unlike a connection lost
        self._conn: psycopg.Connection | None = None
        self._open()

    def _open(self) -> psycopg.Connection:
        try:
            # Autocommit: transactions are begun by hand, where the contract opens them.
            conn = psycopg.connect(self.url, autocommit=True)
            self._setup(conn)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc
        self._conn = conn
        return conn

    def _current(self) -> psycopg.Connection:
        if self._closed:
            raise psycopg.OperationalError("the connection is closed")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self.in_transaction:
            raise StorageUnavailable("the connection was lost in the middle of a unit of work")
        return self._open()

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor:
        conn = self._current()
        try:
            return conn.execute(query, params)
        except psycopg.OperationalError as exc:
            if self._closed or not (conn.closed or conn.broken):
                raise
            if self.in_transaction:
                raise StorageUnavailable(str(exc)) from exc
        # Lost outside a transaction (a read, or a unit of work's BEGIN): nothing was done; once more, anew.
        try:
            return self._open().execute(query, params)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    def cursor(self) -> psycopg.Cursor:
        return self._current().cursor()

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
