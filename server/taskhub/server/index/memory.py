"""The in-memory `TaskFinder`: the `TaskIndex` behind the read-model interface, fed committed changes.

It starts from a saved snapshot of itself when one fits the database (same history,
not ahead of it), else from the storage's task rows (`reload`); from there it is kept
up to date only by the changes it is given (`apply`), in sequence order: from this
process's commits and from the change log, which brings other processes' commits too.
`checkpoint` saves it, so the next start reads one file and the changes since, not
every row. Reads and changes meet under one lock: changes come on the store thread,
reads on the event loop and the read thread. No bitmap leaves it: answers are uids,
counts and index uids.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import os
import threading
import time
from collections.abc import Callable

import numpy as np
from pyroaring import BitMap

from taskhub.server.index import activity, snapshot
from taskhub.server.index.task_index import TaskIndex
from taskhub.server.index.waiting import Waiting
from taskhub.server.model import Scope, TaskKind, TaskQuery, TaskStatus
from taskhub.server.storage.contract import Changes, Reader

log = logging.getLogger(__name__)
BUILD_CHUNK = 100_000
PROGRESS_EVERY = 5.0  # seconds between progress lines while the index is built from rows


@dataclasses.dataclass(slots=True)
class Tally:
    """The finder's counts: every task; by (status, type); by (index uid, status) for the largest indexes, and
    by status for the others together; how many indexes hold a task."""

    total: int
    by_status_type: dict[tuple[TaskStatus, TaskKind | int], int]
    by_index_status: dict[tuple[str, TaskStatus], int]
    other: dict[TaskStatus, int]
    indexes: int


class MemoryFinder:
    """A `TaskIndex` with the `TaskFinder` interface; `snapshot_path` is where it is saved between starts."""

    def __init__(self, snapshot_path: str | None = None) -> None:
        self.index = TaskIndex()
        self.lock = threading.Lock()
        self.snapshot_path = snapshot_path
        self._spare: dict[str, np.ndarray] | None = None
        # The enqueued tasks not due yet (delayed runs, retries backing off), for queries with `due_at`.
        self.waiting = Waiting()

    @property
    def in_memory(self) -> bool:
        return True

    def reload(self, reader: Reader, *, fresh: bool = False) -> int:
        """Takes the saved snapshot when it fits the database (not `fresh`), else every stored task; then the
        tasks waiting for their runAt, read after them (the changes followed from `seq` on cover the gap)."""
        seq = self._reload(reader, fresh)
        waiting = Waiting()
        waiting.load(reader.tasks.waiting())
        with self.lock:
            self.waiting = waiting
        return seq

    def _reload(self, reader: Reader, fresh: bool) -> int:
        if not fresh and self.snapshot_path is not None:
            saved = snapshot.load(self.snapshot_path)
            if saved is not None:
                epoch, last = reader.log.epoch(), reader.log.last_seq()
                if saved.epoch == epoch and saved.seq <= last:
                    with self.lock:
                        self.index = saved.index
                    return saved.seq
                log.info(
                    "index snapshot %s is of another history or ahead of the database: reading every task",
                    self.snapshot_path,
                )
                # Never to be taken later, when the database has caught up with its sequence number on
                # another branch of the history.
                with contextlib.suppress(OSError):
                    os.unlink(self.snapshot_path)
        return self._read_rows(reader)

    def checkpoint(self, seq: int, epoch: str) -> Callable[[], None] | None:
        """On the store thread (no change comes meanwhile): a copy of the index as of `seq`, and a way to
        save it that needs no lock, to run elsewhere. None when there is nowhere to save it."""
        if self.snapshot_path is None:
            return None
        spare, self._spare = self._spare, None
        state = self.index.to_state(spare)
        path = self.snapshot_path
        return lambda: snapshot.save(state, path, seq=seq, epoch=epoch)

    def prepare_checkpoint(self) -> None:
        """Anywhere, ahead of `checkpoint`: the memory its copy goes into, made (and its pages touched) now,
        so that the copy taken while no change may come only moves bytes."""
        if self.snapshot_path is not None:
            self._spare = self.index.spare_columns()

    def _read_rows(self, reader: Reader) -> int:
        """Reads every stored task into a new index, in one consistent read; the old one answers meanwhile."""
        index = TaskIndex()
        with reader.snapshot():
            seq, count = reader.log.last_seq(), reader.tasks.count()
            say = log.info if count >= BUILD_CHUNK else log.debug  # long work shows its progress
            say("building the index from %d stored tasks", count)
            after, done, shown = -1, 0, time.monotonic()
            while rows := reader.tasks.index_rows(after, BUILD_CHUNK):
                index.load(rows)
                after, done = rows[-1][0], done + len(rows)
                if time.monotonic() - shown >= PROGRESS_EVERY:
                    shown = time.monotonic()
                    log.info("building the index: %d of %d tasks", done, count)
        say("index built from %d tasks", done)
        with self.lock:
            self.index = index
        return seq

    def apply(self, changes: Changes) -> None:
        if changes.tasks:
            with self.lock:
                self.index.apply(changes.tasks, changes.deleted)
                self.waiting.apply(changes.tasks, changes.deleted)

    def _select(self, query: TaskQuery) -> BitMap:
        """Under the lock. The answer may be one of the index's own bitmaps: never changed here."""
        excluded = query.not_index_uids
        # Only a task waiting for its runAt is ever not due: with none waiting, `due_at` changes nothing.
        waiting = self.waiting.mask(query.due_at) if query.due_at is not None else None
        if not excluded and not waiting:
            return self.index.select(query if query.due_at is None else dataclasses.replace(query, due_at=None))
        matched = self.index.select(dataclasses.replace(query, not_index_uids=None, due_at=None))
        indexes = self.index.indexes
        busy = [indexes[name] for name in excluded or () if name in indexes]
        if waiting:
            busy.append(waiting)
        return matched.difference(*busy) if busy else matched

    def page(self, query: TaskQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        with self.lock:
            if query.not_index_uids is None and query.due_at is None:
                return self.index.page(query, limit=limit, from_uid=from_uid, reverse=reverse)
            matched = self._select(query)
            total = len(matched)
            if reverse:
                start = 0 if from_uid is None else (matched.rank(from_uid - 1) if from_uid > 0 else 0)
                return list(matched[start : start + limit + 1]), total
            end = total if from_uid is None else matched.rank(from_uid)
            return list(matched[max(0, end - limit - 1) : end])[::-1], total

    def uids(self, query: TaskQuery, *, limit: int, after_uid: int | None = None, newest: bool = False) -> list[int]:
        with self.lock:
            matched = self._select(query)
            if newest:
                end = len(matched)
                low = 0 if after_uid is None else matched.rank(after_uid)
                return list(matched[max(low, end - limit) : end])[::-1]
            start = 0 if after_uid is None else matched.rank(after_uid)
            return list(matched[start : start + limit])

    def count(self, query: TaskQuery) -> int:
        with self.lock:
            return len(self._select(query))

    def index_uids(self, query: TaskQuery) -> set[str]:
        with self.lock:
            return self.index.index_uids_of(self._select(query))

    def tally(self, max_indexes: int) -> Tally:
        """How many tasks it holds, by status and type, and by status in the `max_indexes` indexes holding the
        most (the others summed): sizes of its bitmaps, no scan.

        Its cost grows with the indexes (one size per index, one per index and status), not with the tasks.
        """
        with self.lock:
            index = self.index
            by_status_type = {
                (status, kind): count
                for status, members in index.statuses.items()
                if members
                for kind, typed in index.types.items()
                if (count := members.intersection_cardinality(typed))
            }
            sizes = [(len(members), name) for name, members in index.indexes.items() if members]
            top = {name for _, name in heapq.nlargest(max_indexes, sizes)}
            pairs = index.index_statuses
            by_index_status: dict[tuple[str, TaskStatus], int] = {}
            other: dict[TaskStatus, int] = {}
            for (name, status), members in pairs.items():
                if count := len(members):
                    if name in top:
                        by_index_status[name, status] = count
                    else:
                        other[status] = other.get(status, 0) + count
            return Tally(len(index.all), by_status_type, by_index_status, other, len(sizes))

    def next_run_at(self, now: int) -> int | None:
        with self.lock:
            return self.waiting.next_run_at(now)

    def finished_per_second(self, since: int, seconds: int, scope: Scope | None = None) -> dict[TaskStatus, list[int]]:
        with self.lock:
            times, statuses = activity.finished_rows(self.index, since, seconds, scope)
        return activity.finished_per_second(times, statuses, since, seconds)

    def counts_by_index(self, scope: Scope | None = None) -> dict[str | None, dict[TaskStatus, int]]:
        with self.lock:
            return activity.counts_by_index(self.index, scope)

    def close(self) -> None:
        """Nothing to release: the index is only memory."""
