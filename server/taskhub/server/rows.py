"""Rows and tasks for the store family: the task columns, their decoding, the WHERE clause.

Shared by `store`, `lease_store`, `change_log` and `bulk_store` (all SQL lives in
these modules); nothing here opens a connection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from taskhub.server.model import Task, TaskQuery, TaskStatus, TaskType

COLUMNS = (
    "uid, index_uid, status, type, canceled_by, details, error,"
    " enqueued_at, started_at, finished_at, seq"
)
FINISHED = (int(TaskStatus.SUCCEEDED), int(TaskStatus.FAILED), int(TaskStatus.CANCELED))
UNFINISHED = (int(TaskStatus.ENQUEUED), int(TaskStatus.PROCESSING))


@dataclass(slots=True)
class Changes:
    """What one transaction changed, for the watchers: task states in sequence order.

    A deleted task appears with its last state and its uid in `deleted`.
    """

    tasks: list[Task] = field(default_factory=list)
    deleted: frozenset[int] = frozenset()


def dumps(value: object) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def row_to_task(row: tuple) -> Task:
    uid, index_uid, status, type_, canceled_by, details, error, enq, start, fin, seq = row
    return Task(
        uid=uid, index_uid=index_uid, status=TaskStatus(status), type=TaskType(type_),
        canceled_by=canceled_by,
        details=None if details is None else json.loads(details),
        error=None if error is None else json.loads(error),
        enqueued_at=enq, started_at=start, finished_at=fin, seq=seq,
    )


def where(query: TaskQuery) -> tuple[str, list]:
    """The WHERE clause of a query; sets travel as JSON so any size fits in one parameter."""
    clauses: list[str] = []
    params: list = []

    def member(column: str, values: frozenset | None, *, inline: bool = False) -> None:
        if values is None:
            return
        if not values:
            clauses.append("0")
        elif inline:  # small sets of enum ints: let the planner see constants
            clauses.append(f"{column} IN ({','.join(str(int(v)) for v in sorted(values))})")
        elif len(values) == 1:
            clauses.append(f"{column} = ?")
            params.append(next(iter(values)))
        else:
            clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(values)))

    member("uid", query.uids)
    member("index_uid", query.index_uids)
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
