"""The PostgreSQL lease table, and which task rows a lease holds (the `lease` column of `tasks`)."""

from __future__ import annotations

from collections.abc import Iterable

from taskhub.server.model import Task, TaskStatus
from taskhub.server.storage.contract import ACTIVE, LeaseRecord
from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.postgres.tasks import PostgresTasks

# Every leased task let go (a start's): through the partial index of leased tasks.
RELEASE_ALL = "UPDATE tasks SET lease = NULL WHERE lease IS NOT NULL"


class PostgresLeases:
    """The `LeaseTable` of the contract on one connection."""

    def __init__(self, conn: Connection, tasks: PostgresTasks) -> None:
        self.conn = conn
        self._tasks = tasks

    def insert(self, lease: LeaseRecord) -> None:
        self.conn.execute(
            "INSERT INTO leases (token, worker, deadline, duration, state, batch_uid) VALUES (%s, %s, %s, %s, %s, %s)",
            (lease.token, lease.worker, lease.deadline, lease.duration, lease.state, lease.batch_uid),
        )

    def get(self, token: str) -> LeaseRecord | None:
        row = self.conn.execute(
            "SELECT token, worker, deadline, duration, state, batch_uid FROM leases WHERE token = %s", (token,)
        ).fetchone()
        return None if row is None else LeaseRecord(*row)

    def update(self, token: str, *, state: str | None = None, deadline: int | None = None) -> None:
        if state is not None:
            self.conn.execute("UPDATE leases SET state = %s WHERE token = %s", (state, token))
        if deadline is not None:
            self.conn.execute("UPDATE leases SET deadline = %s WHERE token = %s", (deadline, token))

    def count_active(self) -> int:
        # The (state, deadline) index holds the active ones together: as many rows read as leases active.
        row = self.conn.execute("SELECT COUNT(*) FROM leases WHERE state = %s", (ACTIVE,)).fetchone()
        return 0 if row is None else int(row[0])

    def tasks_of(self, token: str) -> list[Task]:
        return self._tasks.leased(token)

    def expired(self, now: int) -> list[str]:
        rows = self.conn.execute("SELECT token FROM leases WHERE state = %s AND deadline < %s", (ACTIVE, now))
        return [r[0] for r in rows]

    def holding(self, uids: Iterable[int]) -> set[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT lease FROM tasks WHERE lease IS NOT NULL AND uid = ANY(%s)", (list(uids),)
        )
        return {r[0] for r in rows}

    def release_tasks(self, uids: Iterable[int]) -> None:
        self.conn.execute("UPDATE tasks SET lease = NULL WHERE uid = ANY(%s)", (list(uids),))

    def end_all(self, state: str) -> None:
        self.conn.execute("UPDATE leases SET state = %s WHERE state = %s", (state, ACTIVE))
        self.conn.execute(RELEASE_ALL)

    def held(self) -> list[tuple[LeaseRecord, list[int]]]:
        rows = self.conn.execute(
            "SELECT l.token, l.worker, l.deadline, l.duration, l.state, l.batch_uid, t.uid FROM leases l"
            " LEFT JOIN tasks t ON t.lease = l.token AND t.status = %s WHERE l.state = %s ORDER BY l.token, t.uid",
            (int(TaskStatus.PROCESSING), ACTIVE),
        ).fetchall()
        held: dict[str, tuple[LeaseRecord, list[int]]] = {}
        for *lease, uid in rows:
            record, uids = held.setdefault(lease[0], (LeaseRecord(*lease), []))
            if uid is not None:
                uids.append(uid)
        return list(held.values())
