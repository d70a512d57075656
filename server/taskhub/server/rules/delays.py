"""Delayed runs: the bounds of a `runAt`, and when the next waiting task falls due.

A task with `extra["runAt"]` (microseconds; asked at enqueue, or set by a retry's
backoff) is not leased before then: a lease asks the finder for the tasks due at its
time (`TaskQuery.due_at`), and a task not due holds no index. `Delays` keeps uid -> runAt
of the enqueued tasks that have one, fed every committed change by the follower (this
process's and every other one's, so it holds across processes sharing a database) and
rebuilt at start from `TaskTable.waiting()`: a lease call waiting for work sleeps at most
until `next_due`, the timer that makes a due task leased within milliseconds.
"""

from __future__ import annotations

import heapq
import threading

from taskhub.errors import TaskHubError
from taskhub.server.model import Task, TaskKind, TaskStatus, format_time
from taskhub.server.storage.contract import Changes, Reader

SECOND = 1_000_000
DAY = 86_400 * SECOND
# How far from now a `runAt` may lie: a little in the past (a producer's clock, an enqueue retried), a year ahead.
MAX_PAST = DAY
MAX_FUTURE = 366 * DAY
CODE = "invalid_task_run_at"


def run_at_of(task: Task) -> int | None:
    """The time a task is not leased before, if it has one."""
    value = task.extra.get("runAt") if task.extra else None
    return None if value is None else int(value)


def checked_run_at(type_: TaskKind, run_at: int, now: int) -> int:
    """A `runAt` asked at enqueue, within bounds, or `invalid_task_run_at`."""
    if type_.server_run:
        raise TaskHubError(CODE, f"`runAt` applies to tasks workers run; the server runs `{type_.label}` tasks.")
    if not now - MAX_PAST <= run_at <= now + MAX_FUTURE:
        raise TaskHubError(
            CODE,
            f"Invalid value in parameter `runAt`: `{format_time(run_at)}` is too far from now; a `runAt` lies"
            f" from one day ago to {MAX_FUTURE // DAY} days ahead.",
        )
    return run_at


class Delays:
    """uid -> runAt of the enqueued tasks that have one; safe to call from any thread."""

    def __init__(self) -> None:
        self._due: dict[int, int] = {}
        # (runAt, uid), the earliest first; entries whose task has moved on stay until they reach the top.
        self._heap: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def reload(self, reader: Reader) -> None:
        """Forgets what it was told and reads the stored waiting tasks."""
        waiting = dict(reader.tasks.waiting())
        with self._lock:
            self._due = waiting
            self._heap = [(run_at, uid) for uid, run_at in waiting.items()]
            heapq.heapify(self._heap)

    def apply(self, changes: Changes) -> None:
        """One commit's changes, in sequence order: a task is kept while it is enqueued with a runAt."""
        with self._lock:
            for task in changes.tasks:
                run_at = None
                if task.status == TaskStatus.ENQUEUED and task.uid not in changes.deleted:
                    run_at = run_at_of(task)
                if run_at is None:
                    self._due.pop(task.uid, None)
                elif self._due.get(task.uid) != run_at:
                    self._due[task.uid] = run_at
                    heapq.heappush(self._heap, (run_at, task.uid))
            if len(self._heap) > 2 * len(self._due) + 1_024:  # many stale entries: start over from the map
                self._heap = [(run_at, uid) for uid, run_at in self._due.items()]
                heapq.heapify(self._heap)

    def next_due(self, now: int) -> int | None:
        """The earliest runAt after `now` of a task still waiting; None when none waits.

        The tasks due by `now` are forgotten: a lease can take them already, so no wait is for them.
        """
        with self._lock:
            heap, due = self._heap, self._due
            while heap and (heap[0][0] <= now or due.get(heap[0][1]) != heap[0][0]):
                run_at, uid = heapq.heappop(heap)
                if run_at <= now and due.get(uid) == run_at:
                    del due[uid]
            return heap[0][0] if heap else None

    def __len__(self) -> int:
        return len(self._due)
