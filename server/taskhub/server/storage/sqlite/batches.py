"""The SQLite batch tables: one row a batch, its members (`batch_tasks`), types and progress beside it.

A batch's counts and details are JSON in its row; what a filter asks most (statuses, index, dates)
are columns. Only the uid and the membership are indexed: a lease writes a few pages more, no more.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from taskhub.server.batch import Batch, ProgressStep
from taskhub.server.model import STATUS_BY_LABEL, TaskKind
from taskhub.server.storage.sqlite.rows import bump, compact, counter, loads
from taskhub.server.storage.sqlite.task_types import TypeCodes

COLUMNS = (
    "uid, started_at, finished_at, enqueued_first, enqueued_last, index_uid, lease, worker, lease_state,"
    " strategy, stats, details"
)
# What a batch costs in a page beside its counts and details, as an upper bound.
ROW_BYTES = 512


def status_mask(batch: Batch) -> int:
    return sum(1 << int(s) for s, n in batch.statuses.items() if n)


def _stats(batch: Batch) -> str:
    return compact(
        {
            "total": batch.total,
            "status": {s.label: n for s, n in batch.statuses.items()},
            "types": {t.label: n for t, n in batch.types.items()},
            "indexUids": batch.index_uids,
        }
    )


def _row_to_batch(row: Sequence[Any], progress: str | None, kind_of: Callable[[str], TaskKind]) -> Batch:
    uid, started, finished, first, last, index_uid, lease, worker, state, strategy, stats, details = row
    counts = loads(stats)
    steps = None
    if finished is None:
        steps = [] if progress is None else [ProgressStep(*s) for s in loads(progress)]
    return Batch(
        uid=uid,
        started_at=started,
        strategy=strategy,
        total=counts["total"],
        statuses={STATUS_BY_LABEL[k]: v for k, v in counts["status"].items()},
        types={kind_of(k): v for k, v in counts["types"].items()},
        index_uids=counts["indexUids"],
        details=loads(details),
        enqueued_first=first,
        enqueued_last=last,
        index_uid=index_uid,
        finished_at=finished,
        progress=steps,
        lease=lease,
        worker=worker,
        lease_state=state,
    )


class SqliteBatches:
    """The `BatchTable` of the contract on one connection."""

    def __init__(self, conn: sqlite3.Connection, codes: TypeCodes) -> None:
        self.conn = conn
        self._codes = codes

    def next_uid(self) -> int:
        return counter(self.conn, "next_batch_uid")

    def count(self) -> int:
        return counter(self.conn, "batch_count")

    def insert(self, batch: Batch, task_uids: Sequence[int]) -> Batch:
        batch.uid = bump(self.conn, "next_batch_uid")
        bump(self.conn, "batch_count")
        self.conn.execute(
            f"INSERT INTO batches ({COLUMNS}, statuses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                batch.uid,
                batch.started_at,
                batch.finished_at,
                batch.enqueued_first,
                batch.enqueued_last,
                batch.index_uid,
                batch.lease,
                batch.worker,
                batch.lease_state,
                batch.strategy,
                _stats(batch),
                compact(batch.details),
                status_mask(batch),
            ),
        )
        self.conn.executemany(
            "INSERT INTO batch_tasks (batch_uid, task_uid) VALUES (?, ?)", [(batch.uid, t) for t in task_uids]
        )
        return batch

    def get(self, uid: int) -> Batch | None:
        row = self.conn.execute(f"SELECT {COLUMNS} FROM batches WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else _row_to_batch(row, self._progress(row), self._codes.kind)

    def _progress(self, row: Sequence[Any]) -> str | None:
        if row[2] is not None:  # ended: no progress
            return None
        found = self.conn.execute("SELECT steps FROM batch_progress WHERE batch_uid = ?", (row[0],)).fetchone()
        return None if found is None else found[0]

    def get_page(self, uids: list[int], budget: int) -> tuple[list[Batch], int | None]:
        rows = {
            r[0]: r
            for r in self.conn.execute(
                f"SELECT {COLUMNS} FROM batches WHERE uid IN (SELECT value FROM json_each(?))", (json.dumps(uids),)
            )
        }
        batches: list[Batch] = []
        used = 0
        for uid in uids:
            row = rows.get(uid)
            if row is None:
                continue  # deleted since the finder answered
            used += ROW_BYTES + len(row[10]) + len(row[11])
            if used > budget and batches:
                return batches, uid
            batches.append(_row_to_batch(row, self._progress(row), self._codes.kind))
        return batches, None

    def save(self, batch: Batch) -> None:
        self.conn.execute(
            "UPDATE batches SET finished_at = ?, index_uid = ?, lease_state = ?, stats = ?, details = ?,"
            " statuses = ?, enqueued_first = ?, enqueued_last = ? WHERE uid = ?",
            (
                batch.finished_at,
                batch.index_uid,
                batch.lease_state,
                _stats(batch),
                compact(batch.details),
                status_mask(batch),
                batch.enqueued_first,
                batch.enqueued_last,
                batch.uid,
            ),
        )
        if batch.finished_at is not None:
            self.conn.execute("DELETE FROM batch_progress WHERE batch_uid = ?", (batch.uid,))

    def add_tasks(self, uid: int, task_uids: Sequence[int]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO batch_tasks (batch_uid, task_uid) VALUES (?, ?)", [(uid, t) for t in task_uids]
        )

    def task_uids_of(self, uids: Iterable[int]) -> list[int]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT task_uid FROM batch_tasks WHERE batch_uid IN (SELECT value FROM json_each(?))"
                " ORDER BY task_uid",
                (json.dumps(sorted(uids)),),
            )
        ]

    def batches_of(self, task_uids: Iterable[int]) -> list[int]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT batch_uid FROM batch_tasks WHERE task_uid IN (SELECT value FROM json_each(?))"
                " ORDER BY batch_uid",
                (json.dumps(sorted(task_uids)),),
            )
        ]

    def set_progress(self, uid: int, steps: Sequence[ProgressStep]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO batch_progress (batch_uid, steps) VALUES (?, ?)",
            (uid, compact([[s.name, s.finished, s.total] for s in steps])),
        )

    def open_uids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT uid FROM batches WHERE finished_at IS NULL ORDER BY uid")]

    def forget_tasks(self, task_uids: Iterable[int]) -> list[int]:
        uids = json.dumps(sorted(task_uids))
        touched = self.conn.execute(
            "DELETE FROM batch_tasks WHERE task_uid IN (SELECT value FROM json_each(?)) RETURNING batch_uid", (uids,)
        ).fetchall()
        candidates = json.dumps(sorted({r[0] for r in touched}))
        emptied = [
            r[0]
            for r in self.conn.execute(
                "DELETE FROM batches WHERE uid IN (SELECT value FROM json_each(?))"
                " AND NOT EXISTS (SELECT 1 FROM batch_tasks WHERE batch_uid = batches.uid) RETURNING uid",
                (candidates,),
            ).fetchall()
        ]
        if emptied:
            gone = json.dumps(emptied)
            self.conn.execute("DELETE FROM batch_progress WHERE batch_uid IN (SELECT value FROM json_each(?))", (gone,))
            bump(self.conn, "batch_count", -len(emptied))
        return sorted(emptied)
