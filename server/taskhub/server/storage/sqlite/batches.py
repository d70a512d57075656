"""The SQLite batch tables: one row a batch, its members (`batch_tasks`), types and progress beside it.

A batch's counts and details are JSON in its row; what a filter asks most (statuses, index, dates)
are columns. Only the uid and the membership are indexed: a lease writes a few pages more, no more.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from taskhub.server.batch import Batch, ProgressStep
from taskhub.server.storage.batch_rows import COLUMNS, ROW_BYTES, row_to_batch, stats_json, status_mask
from taskhub.server.storage.rows import TypeCodes, compact
from taskhub.server.storage.sqlite.rows import bump, counter


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
                stats_json(batch),
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
        return None if row is None else row_to_batch(row, self._progress(row), self._codes.kind)

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
            batches.append(row_to_batch(row, self._progress(row), self._codes.kind))
        return batches, None

    def save(self, batch: Batch) -> None:
        self.conn.execute(
            "UPDATE batches SET finished_at = ?, index_uid = ?, lease_state = ?, stats = ?, details = ?,"
            " statuses = ?, enqueued_first = ?, enqueued_last = ? WHERE uid = ?",
            (
                batch.finished_at,
                batch.index_uid,
                batch.lease_state,
                stats_json(batch),
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
