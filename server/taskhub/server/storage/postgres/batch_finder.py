"""The plain-SQL `BatchFinder` on PostgreSQL: which batches match a filter, asked of the batch rows.

The rule of SQLite's (`storage/sqlite/batch_finder.py`): a batch matches when it holds a task matching
each set field; statuses are a bit mask column, member tasks a side table, types the `stats` JSON.
"""

from __future__ import annotations

from taskhub.server.batch import BatchQuery
from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.postgres.rows import counter


def where(query: BatchQuery) -> tuple[str, list]:
    """A query as a WHERE clause over the batch rows; sets travel as arrays."""
    clauses: list[str] = []
    params: list = []

    def within(clause: str, values: frozenset | None) -> None:
        if values is None:
            return
        if not values:
            clauses.append("FALSE")
            return
        clauses.append(clause)
        params.append(sorted(values))

    within("uid = ANY(%s)", query.batch_uids)
    within("uid IN (SELECT batch_uid FROM batch_tasks WHERE task_uid = ANY(%s))", query.task_uids)
    within("index_uid = ANY(%s)", query.index_uids)
    if query.types is not None:
        within(
            "EXISTS (SELECT 1 FROM jsonb_object_keys(stats::jsonb -> 'types') AS t(name) WHERE t.name = ANY(%s))",
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
                bounds.append(f"{column} < %s")
                params.append(before)
            if after is not None:
                bounds.append(f"{column} > %s")
                params.append(after)
            sides.append("(" + " AND ".join(bounds) + ")")
        clauses.append("(" + " OR ".join(sides) + ")")
    for bound, clause in (
        (query.before_started_at, "started_at < %s"),
        (query.after_started_at, "started_at > %s"),
        (query.before_finished_at, "finished_at < %s"),
        (query.after_finished_at, "finished_at > %s"),
    ):
        if bound is not None:
            clauses.append(clause)
            params.append(bound)
    if query.scope is not None:
        # A scoped key sees batches of one index it may see: NULL (a batch holding a global task) matches none.
        allowed = ["index_uid = ANY(%s)"]
        params.append(sorted(query.scope.names))
        for prefix in query.scope.prefixes:
            allowed.append("starts_with(index_uid, %s)")
            params.append(prefix)
        clauses.append("(" + " OR ".join(allowed) + ")")
    return (" AND ".join(clauses) or "TRUE"), params


class PostgresBatchFinder:
    """The `BatchFinder` of the contract on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def page(self, query: BatchQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        sql, params = where(query)
        if sql == "TRUE":
            total = counter(self.conn, "batch_count")
        else:
            row = self.conn.execute(f"SELECT COUNT(*) FROM batches WHERE {sql}", params).fetchone()
            total = 0 if row is None else int(row[0])
        if reverse:
            bound, order = ("" if from_uid is None else f" AND uid >= {int(from_uid)}"), "ASC"
        else:
            bound, order = ("" if from_uid is None else f" AND uid <= {int(from_uid)}"), "DESC"
        rows = self.conn.execute(
            f"SELECT uid FROM batches WHERE {sql}{bound} ORDER BY uid {order} LIMIT %s", [*params, limit + 1]
        )
        return [r[0] for r in rows], total
