"""The enqueued tasks that are not due yet, as a bitmap the in-memory finder takes out of a query's answer.

A task enqueued with `extra["runAt"]` (a delayed run, or a retry's backoff) is in `pending`
until its time; `mask(now)` first drops the tasks whose time came, then answers the bitmap
of those still waiting. Fed the same changes as the index, and loaded at a reload from the
storage's `TaskTable.waiting()` (a partial index): never by reading every row. Not thread
safe: the finder calls it under its lock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from pyroaring import BitMap

from taskhub.server.model import Task, TaskStatus


class Waiting:
    """uid -> runAt of the enqueued tasks that have one, and the bitmap of those not due yet."""

    def __init__(self) -> None:
        self.pending = BitMap()
        self._run_at: dict[int, int] = {}
        # (runAt, uid), the earliest first; an entry whose task moved on stays until it comes up.
        self._heap: list[tuple[int, int]] = []

    def load(self, waiting: Iterable[tuple[int, int]]) -> None:
        self._run_at = dict(waiting)
        self._heap = [(run_at, uid) for uid, run_at in self._run_at.items()]
        heapq.heapify(self._heap)
        self.pending = BitMap(self._run_at)

    def apply(self, tasks: Iterable[Task], deleted: frozenset[int]) -> None:
        waiting = self._run_at
        for task in tasks:
            extra = task.extra
            run_at = None
            if extra is not None and task.status == TaskStatus.ENQUEUED and task.uid not in deleted:
                run_at = extra.get("runAt")
            if run_at is None:
                # Most changes are of tasks that never waited: one test of an empty map, or of a key, for them.
                if waiting and waiting.pop(task.uid, None) is not None:
                    self.pending.discard(task.uid)
            elif waiting.get(task.uid) != run_at:
                waiting[task.uid] = run_at
                heapq.heappush(self._heap, (run_at, task.uid))
                self.pending.add(task.uid)
        if len(self._heap) > 2 * len(waiting) + 1_024:  # many stale entries: start over from the map
            self._heap = [(run_at, uid) for uid, run_at in waiting.items()]
            heapq.heapify(self._heap)

    def mask(self, now: int) -> BitMap:
        """The tasks not due at `now` (the finder's own bitmap: never to be changed by the caller)."""
        heap, run_at = self._heap, self._run_at
        while heap and heap[0][0] <= now:
            due, uid = heapq.heappop(heap)
            if run_at.get(uid) == due:
                del run_at[uid]
                self.pending.discard(uid)
        return self.pending

    def next_run_at(self, now: int) -> int | None:
        """The earliest runAt after `now` of a task still waiting (None: none waits)."""
        self.mask(now)
        heap, run_at = self._heap, self._run_at
        while heap and run_at.get(heap[0][1]) != heap[0][0]:  # entries of tasks that moved on
            heapq.heappop(heap)
        return heap[0][0] if heap else None
