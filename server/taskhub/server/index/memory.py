"""The in-memory `TaskFinder`: the `TaskIndex` behind the read-model interface, fed committed changes.

It is built from a storage's task rows (`reload`), then kept up to date only by the
changes it is given (`apply`), in sequence order: from this process's commits and
from the change log, which brings other processes' commits too. Reads and changes
meet under one lock: changes come on the store thread, reads on the event loop and
the read thread. No bitmap leaves it: answers are uids, counts and index uids.
"""

from __future__ import annotations

import dataclasses
import threading

from pyroaring import BitMap

from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import TaskQuery
from taskhub.server.storage.contract import Changes, Reader

BUILD_CHUNK = 100_000


class MemoryFinder:
    """A `TaskIndex` with the `TaskFinder` interface."""

    def __init__(self, index: TaskIndex | None = None) -> None:
        self.index = index if index is not None else TaskIndex()
        self.lock = threading.Lock()

    def reload(self, reader: Reader) -> int:
        """Reads every stored task into a new index, in one consistent read; the old one answers meanwhile."""
        index = TaskIndex()
        with reader.snapshot():
            seq = reader.log.last_seq()
            after = -1
            while rows := reader.tasks.index_rows(after, BUILD_CHUNK):
                index.load(rows)
                after = rows[-1][0]
        with self.lock:
            self.index = index
        return seq

    def apply(self, changes: Changes) -> None:
        if changes.tasks:
            with self.lock:
                self.index.apply(changes.tasks, changes.deleted)

    def _select(self, query: TaskQuery) -> BitMap:
        """Under the lock. The answer may be one of the index's own bitmaps: never changed here."""
        excluded = query.not_index_uids
        if not excluded:
            return self.index.select(query)
        matched = self.index.select(dataclasses.replace(query, not_index_uids=None))
        indexes = self.index.indexes
        busy = [indexes[name] for name in excluded if name in indexes]
        return matched - BitMap.union(BitMap(), *busy) if busy else matched

    def page(self, query: TaskQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        with self.lock:
            if query.not_index_uids is None:
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

    def close(self) -> None:
        """Nothing to release: the index is only memory."""
