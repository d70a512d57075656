"""The PostgreSQL batch tables: one row a batch, its members (`batch_tasks`), progress beside it.

The same rows as SQLite's (counts and details as JSON text, a status bit mask), so the rules and
the finder's rule read the same on both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from taskhub.server.batch import Batch, ProgressStep
from taskhub.server.storage.batch_rows import COLUMNS, ROW_BYTES, row_to_batch, stats_json, status_mask
from taskhub.server.storage.postgres.connection import Connection
from taskhub.server.storage.postgres.rows import bump, counter
from taskhub.server.storage.rows import TypeCodes, compact

# A batch's columns and its progress, read along (an ended batch has none): one query, not one a batch.
_WITH_PROGRESS = (
    f"SELECT {COLUMNS}, (SELECT p.steps FROM batch_progress p WHERE p.batch_uid = batches.uid"
    " AND batches.finished_at IS NULL) FROM batches"
)


class PostgresBatches:
    """The `BatchTable` of the contract on one connection."""

    def __init__(self, conn: Connection, codes: TypeCodes) -> None:
        self.conn = conn
        self._codes = codes

    def next_uid(self) -> int:
        return counter(self.conn, "next_batch_uid")

    def count(self) -> int:
        return counter(self.conn, "batch_count")

    def insert(self, batch: Batch, task_uids: Sequence[int]) -> Batch:
        batch.uid = bump(self.conn, "next_batch_uid")
        bump(self.conn, "batch_count")
        # The batch and its members in one statement (the members' INSERT as a WITH item): one round trip.
        self.conn.execute(
            "WITH members AS (INSERT INTO batch_tasks (batch_uid, task_uid) SELECT %s, unnest(%s::bigint[]))"
            f" INSERT INTO batches ({COLUMNS}, statuses) VALUES ({', '.join(['%s'] * 13)})",
            (
                batch.uid,
                list(task_uids),
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
        return batch

    def get(self, uid: int) -> Batch | None:
        row = self.conn.execute(f"{_WITH_PROGRESS} WHERE uid = %s", (uid,)).fetchone()
        return None if row is None else row_to_batch(row[:-1], row[-1], self._codes.kind)

    def get_page(self, uids: list[int], budget: int) -> tuple[list[Batch], int | None]:
        rows = {r[0]: r for r in self.conn.execute(f"{_WITH_PROGRESS} WHERE uid = ANY(%s)", (uids,))}
        batches: list[Batch] = []
        used = 0
        for uid in uids:
            row = rows.get(uid)
            if row is None:
                continue  # deleted since the finder answered
            used += ROW_BYTES + len(row[10]) + len(row[11])
            if used > budget and batches:
                return batches, uid
            batches.append(row_to_batch(row[:-1], row[-1], self._codes.kind))
        return batches, None

    def save(self, batch: Batch) -> None:
        # An ended batch's progress goes in the same statement (a data-modifying WITH item runs whatever reads it).
        ended = (
            "WITH gone AS (DELETE FROM batch_progress WHERE batch_uid = %s) " if batch.finished_at is not None else ""
        )
        self.conn.execute(
            ended + "UPDATE batches SET finished_at = %s, index_uid = %s, lease_state = %s, stats = %s, details = %s,"
            " statuses = %s, enqueued_first = %s, enqueued_last = %s WHERE uid = %s",
            (
                *((batch.uid,) if ended else ()),
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

    def add_tasks(self, uid: int, task_uids: Sequence[int]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO batch_tasks (batch_uid, task_uid) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(uid, t) for t in task_uids],
            )

    def task_uids_of(self, uids: Iterable[int]) -> list[int]:
        rows = self.conn.execute(
            "SELECT DISTINCT task_uid FROM batch_tasks WHERE batch_uid = ANY(%s) ORDER BY task_uid", (sorted(uids),)
        )
        return [r[0] for r in rows]

    def batches_of(self, task_uids: Iterable[int]) -> list[int]:
        rows = self.conn.execute(
            "SELECT DISTINCT batch_uid FROM batch_tasks WHERE task_uid = ANY(%s) ORDER BY batch_uid",
            (sorted(task_uids),),
        )
        return [r[0] for r in rows]

    def set_progress(self, uid: int, steps: Sequence[ProgressStep]) -> None:
        self.conn.execute(
            "INSERT INTO batch_progress (batch_uid, steps) VALUES (%s, %s)"
            " ON CONFLICT (batch_uid) DO UPDATE SET steps = excluded.steps",
            (uid, compact([[s.name, s.finished, s.total] for s in steps])),
        )

    def open_uids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT uid FROM batches WHERE finished_at IS NULL ORDER BY uid")]

    def forget_tasks(self, task_uids: Iterable[int]) -> list[int]:
        touched = self.conn.execute(
            "DELETE FROM batch_tasks WHERE task_uid = ANY(%s) RETURNING batch_uid", (sorted(task_uids),)
        ).fetchall()
        candidates = sorted({r[0] for r in touched})
        emptied = [
            r[0]
            for r in self.conn.execute(
                "DELETE FROM batches WHERE uid = ANY(%s)"
                " AND NOT EXISTS (SELECT 1 FROM batch_tasks WHERE batch_uid = batches.uid) RETURNING uid",
                (candidates,),
            ).fetchall()
        ]
        if emptied:
            self.conn.execute("DELETE FROM batch_progress WHERE batch_uid = ANY(%s)", (emptied,))
            bump(self.conn, "batch_count", -len(emptied))
        return sorted(emptied)
