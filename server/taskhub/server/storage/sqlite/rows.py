"""Rows and tasks for the store family: the task columns and their decoding.

Shared by `store`, `lease_store`, `change_log` and `bulk_store` (all SQL lives in
these modules); nothing here opens a connection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from taskhub.server.model import STATUS_OF, TYPE_OF, Task, TaskStatus

COLUMNS = "uid, index_uid, status, type, canceled_by, details, error, enqueued_at, started_at, finished_at, seq"
FINISHED = (int(TaskStatus.SUCCEEDED), int(TaskStatus.FAILED), int(TaskStatus.CANCELED))
UNFINISHED = (int(TaskStatus.ENQUEUED), int(TaskStatus.PROCESSING))


@dataclass(slots=True)
class Changes:
    """What one transaction changed, for the watchers: task states in sequence order.

    A deleted task appears with its last state (no details nor error) and its uid in `deleted`.
    """

    tasks: list[Task] = field(default_factory=list)
    deleted: frozenset[int] = frozenset()


# One encoder for every row: json.dumps with options would build a new one per call.
compact = json.JSONEncoder(separators=(",", ":")).encode


def dumps(value: object) -> str | None:
    return None if value is None else compact(value)


# Every JSON text we read back is one we wrote, with no whitespace around it: `raw_decode`
# skips `json.loads`'s type checks and its two whitespace scans, much of the cost of decoding a
# task's details, paid for each row of every page (bench/README.md, Defaults chosen by measurement).
_raw_decode = json.JSONDecoder().raw_decode


def loads(text: str) -> object:
    """The value of a JSON text this store wrote."""
    return _raw_decode(text)[0]


def row_to_task(row: tuple) -> Task:
    uid, index_uid, status, type_, canceled_by, details, error, enq, start, fin, seq = row
    # Positional, in `Task`'s field order: no keyword matching for each row of a page
    # (tests/test_store_schema.py checks every field lands in its place).
    return Task(
        uid,
        index_uid,
        STATUS_OF[status],
        TYPE_OF[type_],
        enq,
        None if details is None else loads(details),
        None if error is None else loads(error),
        canceled_by,
        start,
        fin,
        seq,
    )
