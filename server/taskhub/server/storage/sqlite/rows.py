"""Rows and tasks for the SQLite tables: the task columns, their decoding, the counters in `meta`.

Shared by the table modules beside it; nothing here opens a connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from taskhub.server.model import STATUS_OF, TYPE_OF, Task, TaskKind

COLUMNS = "uid, index_uid, status, type, canceled_by, details, error, enqueued_at, started_at, finished_at, seq, extra"


# One encoder for every row: json.dumps with options would build a new one per call.
compact = json.JSONEncoder(separators=(",", ":")).encode


def dumps(value: object) -> str | None:
    return None if value is None else compact(value)


# Every JSON text we read back is one we wrote, with no whitespace around it: `raw_decode`
# skips `json.loads`'s type checks and its two whitespace scans, much of the cost of decoding a
# task's details, paid for each row of every page (bench/README.md, Defaults chosen by measurement).
_raw_decode = json.JSONDecoder().raw_decode


def loads(text: str) -> Any:
    """The value of a JSON text this store wrote (Any, as `json.loads`: its shape is the writer's)."""
    return _raw_decode(text)[0]


def row_to_task(row: Sequence[Any], type_of: Mapping[int, TaskKind] = TYPE_OF) -> Task:
    """A task from its columns in `COLUMNS` order; a change logged before schema 5 has no `extra`.

    `type_of` is the database's types by code (`SqliteTaskTypes.codes`), registered ones included."""
    uid, index_uid, status, type_, canceled_by, details, error, enq, start, fin, seq, *rest = row
    extra = rest[0] if rest else None
    # Positional, in `Task`'s field order: no keyword matching for each row of a page
    # (tests/test_store_schema.py checks every field lands in its place).
    return Task(
        uid,
        index_uid,
        STATUS_OF[status],
        type_of[type_],
        enq,
        None if details is None else loads(details),
        None if error is None else loads(error),
        canceled_by,
        start,
        fin,
        seq,
        None if extra is None else loads(extra),
    )


def bump(conn: sqlite3.Connection, key: str, by: int = 1) -> int:
    """Adds `by` to a counter in `meta` and answers its value before the addition."""
    (after,) = conn.execute("UPDATE meta SET value = value + ? WHERE key = ? RETURNING value", (by, key)).fetchone()
    return after - by


def counter(conn: sqlite3.Connection, key: str) -> int:
    return conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
