"""Rows as both stores keep them: the task columns, their JSON, their decoding, the types by code.

SQLite and PostgreSQL store the same columns and the same JSON text, so one codec serves both;
nothing here opens a connection or names a database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taskhub.server.model import STATUS_OF, TYPE_BY_LABEL, TYPE_OF, CustomType, KeyRecord, Task, TaskKind, TaskStatus

COLUMNS = "uid, index_uid, status, type, canceled_by, details, error, enqueued_at, started_at, finished_at, seq, extra"
# What a task costs in a page beside its details, error and extra fields (uid, dates, index uid, ...), as an upper bound.
ROW_BYTES = 512


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


def waiting_until(task: Task) -> int | None:
    """The `run_at` column: the task's runAt while it is enqueued, else NULL (out of the partial index)."""
    if task.status != TaskStatus.ENQUEUED or not task.extra:
        return None
    return task.extra.get("runAt")


class TypeCodes(dict[int, TaskKind]):
    """Types by stored code; a missing code is looked up again in the table before it is an error."""

    def __init__(self, read: Callable[[], list[tuple[int, str]]]) -> None:
        super().__init__(TYPE_OF)
        self._read = read
        self.reload()

    def reload(self) -> None:
        for code, name in self._read():
            if self.get(code) is None:
                self[code] = CustomType(code, name)

    def kind(self, label: str) -> TaskKind:
        """A type by its label (what batch counts store): Meilisearch's, or one registered on the database."""
        builtin = TYPE_BY_LABEL.get(label)
        if builtin is not None:
            return builtin
        for attempt in range(2):
            found = next((k for k in self.values() if k.label == label), None)
            if found is not None:
                return found
            if not attempt:
                self.reload()  # registered by another server since
        raise KeyError(label)

    def __missing__(self, code: int) -> TaskKind:
        self.reload()
        if dict.__contains__(self, code):
            return dict.__getitem__(self, code)
        raise KeyError(code)


def logged(task: Task, details: str | None, error: str | None, extra: str | None) -> str:
    """A task's state as the change log keeps it: its columns, in `COLUMNS` order, as one JSON array."""
    return compact(
        [
            task.uid,
            task.index_uid,
            int(task.status),
            int(task.type),
            task.canceled_by,
            details,
            error,
            task.enqueued_at,
            task.started_at,
            task.finished_at,
            task.seq,
            extra,
        ]
    )


KEY_COLUMNS = "uid, name, description, actions, indexes, expires_at, created_at, updated_at"


def key_record(row: Sequence[Any]) -> KeyRecord:
    """An API key from its columns in `KEY_COLUMNS` order."""
    uid, name, description, actions, indexes, expires_at, created_at, updated_at = row
    return KeyRecord(
        uid, name, description, json.loads(actions), json.loads(indexes), expires_at, created_at, updated_at
    )


def key_row(key: KeyRecord) -> tuple:
    """A key's values in `KEY_COLUMNS` order."""
    return (
        key.uid,
        key.name,
        key.description,
        json.dumps(key.actions),
        json.dumps(key.indexes),
        key.expires_at,
        key.created_at,
        key.updated_at,
    )
