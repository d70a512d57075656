"""One server per PostgreSQL database, for now: a session advisory lock held while the service runs.

PostgreSQL drops the lock with the connection that holds it, so a server that dies (even by
SIGKILL) leaves no stale lock. Several servers on one database (replicas) need the rules to
share leases and server-run work; until they do, a second server is refused at start.
"""

from __future__ import annotations

import contextlib

import psycopg

from taskhub.server.lock import DatabaseLocked
from taskhub.server.storage.postgres.connection import connect

# "taskhub!" in ASCII: apart from the units of work's lock.
SERVER_LOCK = 0x7461736B68756221


class PostgresServerLock:
    """Holds the database's server lock on a connection of its own."""

    def __init__(self, url: str, shown: str) -> None:
        conn = connect(url, autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (SERVER_LOCK,)).fetchone()
        if row is None or not row[0]:
            holder = conn.execute(
                "SELECT a.client_addr, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted LIMIT 1",
                (SERVER_LOCK & 0xFFFFFFFF,),
            ).fetchone()
            conn.close()
            by = f" (from {holder[0] or 'a local socket'})" if holder else ""
            raise DatabaseLocked(
                f"another taskhub server{by} is serving {shown}. Several servers on one PostgreSQL database are"
                " not supported yet: stop it, or give this one another --db"
            )
        self._conn: psycopg.Connection | None = conn

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                # Unlocked before closing: a closed connection's backend ends (and drops its locks) a moment
                # later, and a server starting again at once would find the database still taken.
                conn.execute("SELECT pg_advisory_unlock(%s)", (SERVER_LOCK,))
                conn.close()
