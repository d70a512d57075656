"""Servers on a PostgreSQL database: each holds the server lock in shared mode while it runs.

Any number of servers (replicas) serve one database together: they share it, and the rules
share out the work (rules/leadership.py). The lock is taken shared so that a server of a
version that serves a database alone (it takes the lock exclusively) and replicas refuse each
other rather than run together. PostgreSQL drops the lock with the connection that holds it,
so a server that dies (even by SIGKILL) leaves no stale lock.
"""

from __future__ import annotations

import contextlib

import psycopg

from taskhub.server.lock import DatabaseLocked
from taskhub.server.storage.postgres.connection import connect

# "taskhub!" in ASCII: apart from the units of work's lock.
SERVER_LOCK = 0x7461736B68756221


class PostgresServerLock:
    """Holds the database's server lock, shared with the other replicas, on a connection of its own."""

    def __init__(self, url: str, shown: str) -> None:
        conn = connect(url, autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock_shared(%s)", (SERVER_LOCK,)).fetchone()
        if row is None or not row[0]:
            holder = conn.execute(
                "SELECT a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.objid = %s AND l.mode = 'ExclusiveLock' AND l.granted LIMIT 1",
                (SERVER_LOCK & 0xFFFFFFFF,),
            ).fetchone()
            conn.close()
            by = f" (from {holder[0] or 'a local socket'})" if holder else ""
            raise DatabaseLocked(
                f"a taskhub server{by} that serves {shown} alone (a version before replicas) holds it: stop it,"
                " or give this one another --db"
            )
        self._conn: psycopg.Connection | None = conn

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                # Unlocked before closing: a closed connection's backend ends (and drops its locks) a moment later.
                conn.execute("SELECT pg_advisory_unlock_shared(%s)", (SERVER_LOCK,))
                conn.close()
