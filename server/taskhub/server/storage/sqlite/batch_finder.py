"""The plain-SQL `BatchFinder`: which batches match a filter, asked of the batch rows on one connection.

A batch matches when it holds a task matching each set field (Meilisearch's rule): statuses are a
bit mask column, member tasks a side table; only a type filter reads the rows' `stats` JSON.
"""

from __future__ import annotations

import json
import sqlite3

from taskhub.server.batch import BatchQuery
from taskhub.server.storage.sqlite.rows import counter


def where(query: BatchQuery) -> tuple[str, list]:
    """A query as a WHERE clause over the batch rows; sets travel as JSON so any size fits in one parameter."""
    clauses: list[str] = []
    params: list = []

    def within(clause: str, values: frozenset | None) -> None:
        if values is None:
            return
        if not values:
            clauses.append("0")
            return
        clauses.append(clause)
        params.append(json.dumps(sorted(values)))

    within("uid IN (SELECT value FROM json_each(?))", query.batch_uids)
    within(
        "uid IN (SELECT batch_uid FROM batch_tasks WHERE task_uid IN (SELECT value FROM json_each(?)))", query.task_uids
    )
    within("index_uid IN (SELECT value FROM json_each(?))", query.index_uids)
    if query.types is not None:
        within(
            "EXISTS (SELECT 1 FROM json_each(stats, '$.types') WHERE key IN (SELECT value FROM json_each(?)))",
            frozenset(t.label for t in query.types),
        )
    if query.statuses is not None:
        clauses.append(f"statuses & {sum(1 << int(s) for s in query.statuses)} != 0")
    before, after = query.before_enqueued_at, query.after_enqueued_at
    if before is not None or after is not None:
        sides = []
        for column in ("enqueued_first", "enqueued_last"):
            bounds = []
            if before is not None:
                bounds.append(f"{column} < ?")
                params.append(before)
            if after is not None:
                bounds.append(f"{column} > ?")
                params.append(after)
            sides.append("(" + " AND ".join(bounds) + ")")
        clauses.append("(" + " OR ".join(sides) + ")")
    for bound, clause in (
        (query.before_started_at, "started_at < ?"),
        (query.after_started_at, "started_at > ?"),
        (query.before_finished_at, "finished_at < ?"),
        (query.after_finished_at, "finished_at > ?"),
    ):
        if bound is not None:
            clauses.append(clause)
            params.append(bound)
    if query.scope is not None:
        # A scoped key sees batches of one index it may see: NULL (a batch holding a global task)
        # matches neither IN nor GLOB.
        allowed = ["index_uid IN (SELECT value FROM json_each(?))"]
        params.append(json.dumps(sorted(query.scope.names)))
        for prefix in query.scope.prefixes:
            allowed.append("index_uid GLOB ?")
            params.append(prefix + "*")
        clauses.append("(" + " OR ".join(allowed) + ")")
    return (" AND ".join(clauses) or "1"), params


class SqliteBatchFinder:
    """The `BatchFinder` of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def page(self, query: BatchQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        sql, params = where(query)
        if sql == "1":
            total = counter(self.conn, "batch_count")
        else:
            total = self.conn.execute(f"SELECT COUNT(*) FROM batches WHERE {sql}", params).fetchone()[0]
        if reverse:
            bound, order = ("" if from_uid is None else f" AND uid >= {int(from_uid)}"), "ASC"
        else:
            bound, order = ("" if from_uid is None else f" AND uid <= {int(from_uid)}"), "DESC"
        rows = self.conn.execute(
            f"SELECT uid FROM batches WHERE {sql}{bound} ORDER BY uid {order} LIMIT ?", [*params, limit + 1]
        )
        return [r[0] for r in rows], total
