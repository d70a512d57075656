"""The plain-SQL `TaskFinder`: which tasks match a filter, asked of the task rows themselves.

It needs no memory and no start-up, and always reads the newest committed state, so
it is the test oracle for the in-memory index and a way to run without one
(`--task-index sql`). The task table keeps no column indexes but the leased one (they
slow every enqueue), so a filter scans the rows: fine for small queues, slow at millions.
Each thread reads through a connection of its own.
"""

from __future__ import annotations

import json
import threading

from taskhub.server.model import Scope, TaskQuery, TaskStatus
from taskhub.server.storage.contract import Changes, Reader
from taskhub.server.storage.sqlite.database import SqliteReader

SECOND = 1_000_000
FINISHED = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED})


def where(query: TaskQuery) -> tuple[str, list]:
    """A query as a WHERE clause over the task rows; sets travel as JSON so any size fits in one parameter."""
    clauses: list[str] = []
    params: list = []

    def member(column: str, values: frozenset | None, *, inline: bool = False, negate: bool = False) -> None:
        if values is None:
            return
        if not values:
            clauses.append("1" if negate else "0")
        elif inline:  # small sets of enum ints: let the planner see constants
            clauses.append(f"{column} IN ({','.join(str(int(v)) for v in sorted(values))})")
        elif negate:  # a task of no index is in no index's set
            clauses.append(f"({column} IS NULL OR {column} NOT IN (SELECT value FROM json_each(?)))")
            params.append(json.dumps(sorted(values)))
        else:
            clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(values)))

    member("uid", query.uids)
    member("index_uid", query.index_uids)
    member("index_uid", query.not_index_uids, negate=True)
    if query.due_at is not None:
        # `run_at` is set only while a task waits enqueued with one.
        clauses.append("(run_at IS NULL OR run_at <= ?)")
        params.append(query.due_at)
    member("status", query.statuses, inline=True)
    member("type", query.types, inline=True)
    member("canceled_by", query.canceled_by)
    for name in TaskQuery.DATE_FIELDS:
        bound = getattr(query, name)
        if bound is not None:
            side, column = name.split("_", 1)
            clauses.append(f"{column} {'<' if side == 'before' else '>'} ?")
            params.append(bound)
    if query.below_uid is not None:
        clauses.append("uid < ?")
        params.append(query.below_uid)
    if query.scope is not None:
        # A scoped key never sees global tasks: NULL matches neither IN nor GLOB. Index uids
        # hold no GLOB metacharacters, so `prefix*` is a plain, case-sensitive prefix match.
        allowed = ["index_uid IN (SELECT value FROM json_each(?))"]
        params.append(json.dumps(sorted(query.scope.names)))
        for prefix in query.scope.prefixes:
            allowed.append("index_uid GLOB ?")
            params.append(prefix + "*")
        clauses.append("(" + " OR ".join(allowed) + ")")
    return (" AND ".join(clauses) or "1"), params


class SqlFinder:
    """The `TaskFinder` of the contract in SQL over one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._readers: list[SqliteReader] = []
        self._lock = threading.Lock()

    def _conn(self):
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = SqliteReader(self.path)
            with self._lock:
                self._readers.append(reader)
        return reader.conn

    @property
    def in_memory(self) -> bool:
        return False  # a filter scans the rows: lists ask it on the read thread

    def reload(self, reader: Reader, *, fresh: bool = False) -> int:
        return reader.log.last_seq()

    def prepare_checkpoint(self) -> None:
        """Nothing to prepare."""

    def checkpoint(self, seq: int, epoch: str) -> None:
        """Nothing to save: the rows are the state."""

    def apply(self, changes: Changes) -> None:
        """Nothing to do: every answer is read from the committed rows."""

    def page(self, query: TaskQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        sql, params = where(query)
        conn = self._conn()
        total = conn.execute(f"SELECT COUNT(*) FROM tasks WHERE {sql}", params).fetchone()[0]
        if reverse:
            bound, order = ("" if from_uid is None else f" AND uid >= {int(from_uid)}"), "ASC"
        else:
            bound, order = ("" if from_uid is None else f" AND uid <= {int(from_uid)}"), "DESC"
        rows = conn.execute(
            f"SELECT uid FROM tasks WHERE {sql}{bound} ORDER BY uid {order} LIMIT ?", [*params, limit + 1]
        )
        return [r[0] for r in rows], total

    def uids(self, query: TaskQuery, *, limit: int, after_uid: int | None = None, newest: bool = False) -> list[int]:
        sql, params = where(query)
        bound = "" if after_uid is None else f" AND uid > {int(after_uid)}"
        order = "DESC" if newest else "ASC"
        rows = self._conn().execute(
            f"SELECT uid FROM tasks WHERE {sql}{bound} ORDER BY uid {order} LIMIT ?", [*params, limit]
        )
        return [r[0] for r in rows]

    def count(self, query: TaskQuery) -> int:
        sql, params = where(query)
        return self._conn().execute(f"SELECT COUNT(*) FROM tasks WHERE {sql}", params).fetchone()[0]

    def index_uids(self, query: TaskQuery) -> set[str]:
        sql, params = where(query)
        rows = self._conn().execute(f"SELECT DISTINCT index_uid FROM tasks WHERE {sql}", params)
        return {r[0] for r in rows if r[0] is not None}

    def next_run_at(self, now: int) -> int | None:
        # `run_at` is set only while a task waits enqueued: the partial index answers from its first entry.
        return self._conn().execute("SELECT MIN(run_at) FROM tasks WHERE run_at > ?", (now,)).fetchone()[0]

    def finished_per_second(self, since: int, seconds: int, scope: Scope | None = None) -> dict[TaskStatus, list[int]]:
        query = TaskQuery(
            statuses=FINISHED, after_finished_at=since - 1, before_finished_at=since + seconds * SECOND, scope=scope
        )
        sql, params = where(query)
        rows = self._conn().execute(
            f"SELECT (finished_at - ?) / {SECOND}, status, COUNT(*) FROM tasks WHERE {sql} GROUP BY 1, 2",
            [since, *params],
        )
        counts: dict[TaskStatus, list[int]] = {}
        for second, status, count in rows:
            counts.setdefault(TaskStatus(status), [0] * seconds)[second] = count
        return counts

    def counts_by_index(self, scope: Scope | None = None) -> dict[str | None, dict[TaskStatus, int]]:
        sql, params = where(TaskQuery(scope=scope))
        counts: dict[str | None, dict[TaskStatus, int]] = {}
        for index_uid, status, count in self._conn().execute(
            f"SELECT index_uid, status, COUNT(*) FROM tasks WHERE {sql} GROUP BY 1, 2", params
        ):
            counts.setdefault(index_uid, {})[TaskStatus(status)] = count
        return counts

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
