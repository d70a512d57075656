"""The PostgreSQL change log: every committed task state, under its sequence number.

`last_seq` is a counter in `meta` bumped inside the writing unit of work, which holds the
storage's advisory lock until it commits: units of work on the database commit one at a
time, so sequence numbers follow commit order with no gap, across servers too.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from taskhub.server.model import Task, TaskKind
from taskhub.server.storage.contract import Changes
from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.postgres.rows import bump, counter
from taskhub.server.storage.rows import dumps, loads, logged, row_to_task

# The log's rows as a data-modifying WITH item (it runs whether read or not), for `appending`'s parameters.
APPEND = (
    "appended AS (INSERT INTO changes (seq, uid, deleted, task) SELECT a.seq, a.uid, %s, a.task"
    " FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS a(seq, uid, task)) "
)


class PostgresChangeLog:
    """The `ChangeLog` of the contract on one connection; `logged` is what the open unit of work appended."""

    def __init__(
        self, conn: Connection, atomic: Callable[[], AbstractContextManager], type_of: dict[int, TaskKind]
    ) -> None:
        self.conn = conn
        self.type_of = type_of
        self._atomic = atomic
        self.logged: list[tuple[Task, bool]] = []

    @property
    def changes(self) -> Changes:
        return Changes(
            tasks=[task for task, _ in self.logged],
            deleted=frozenset(task.uid for task, deleted in self.logged if deleted),
        )

    def last_seq(self) -> int:
        return counter(self.conn, "last_seq")

    def epoch(self) -> str:
        return str(counter(self.conn, "epoch"))

    def sequence(self, tasks: list[Task]) -> None:
        """Gives the tasks the next sequence numbers, in their order."""
        first_seq = bump(self.conn, "last_seq", len(tasks)) + 1
        for i, task in enumerate(tasks):
            task.seq = first_seq + i

    def append(
        self,
        tasks: list[Task],
        encoded: list[tuple[str | None, str | None, str | None]] | None = None,
        *,
        deleted: bool = False,
    ) -> None:
        """Appends tasks' new (or, `deleted`, last) states under their sequence numbers.

        `encoded` may hold their (details, error, extra) already as JSON, as the row update wrote them.
        """
        self.conn.execute(f"WITH {APPEND}SELECT 1", self.appending(tasks, encoded, deleted=deleted))

    def appending(
        self,
        tasks: list[Task],
        encoded: list[tuple[str | None, str | None, str | None]] | None = None,
        *,
        deleted: bool = False,
    ) -> tuple:
        """`append` but for the statement: answers the parameters of `APPEND`, which the caller's statement
        carries (the row writes and their log in one round trip)."""
        if encoded is None:
            encoded = [(dumps(task.details), dumps(task.error), dumps(task.extra)) for task in tasks]
        self.logged += ((task, deleted) for task in tasks)
        states = [logged(t, details, error, extra) for t, (details, error, extra) in zip(tasks, encoded)]
        bump(self.conn, "change_bytes", sum(len(state) for state in states))
        return (deleted, [t.seq for t in tasks], [t.uid for t in tasks], states)

    def changes_after(self, seq: int, limit: int) -> Changes:
        """Up to `limit` logged changes after `seq`, in order."""
        rows = self.conn.execute(
            "SELECT deleted, task FROM changes WHERE seq > %s ORDER BY seq LIMIT %s", (seq, limit)
        ).fetchall()
        tasks = [row_to_task(loads(task), self.type_of) for _, task in rows]
        return Changes(tasks, frozenset(t.uid for t, (deleted, _) in zip(tasks, rows) if deleted))

    def oldest_change(self) -> int | None:
        row = self.conn.execute("SELECT MIN(seq) FROM changes").fetchone()
        return None if row is None else row[0]

    def change_bytes(self) -> int:
        """Bytes of task states the change log holds (its JSON text is ASCII: a character is a byte)."""
        return counter(self.conn, "change_bytes")

    def prune_changes(
        self,
        keep: int,
        keep_bytes: int | None = None,
        *,
        keep_after: int | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> int:
        """Drops the oldest changes until at most `keep` remain, of at most `keep_bytes`; answers how many went."""
        with self._atomic() as tx:
            if check is not None:
                check(tx)
            cut = self.last_seq() - keep
            if keep_after is not None:
                cut = min(cut, keep_after)
            excess = 0 if keep_bytes is None else self.change_bytes() - keep_bytes
            if excess > 0:
                # Oldest first, only as far as the excess reaches: these rows go anyway.
                row = self.conn.execute(
                    "SELECT seq FROM (SELECT seq, SUM(length(task)) OVER (ORDER BY seq) AS freed FROM changes) s"
                    " WHERE freed >= %s ORDER BY seq LIMIT 1",
                    (excess,),
                ).fetchone()
                if row is not None:
                    cut = max(cut, row[0])
            sizes = self.conn.execute("DELETE FROM changes WHERE seq <= %s RETURNING length(task)", (cut,)).fetchall()
            if sizes:
                bump(self.conn, "change_bytes", -sum(size for (size,) in sizes))
            return len(sizes)
