"""Delayed runs: a task's `runAt`, and its bounds at enqueue.

A task with `extra["runAt"]` (microseconds; asked at enqueue, or set by a retry's
backoff) is not leased before then: a lease asks the finder for the tasks due at its
time (`TaskQuery.due_at`), and a task not due holds no index. The finder knows the waiting
tasks from the change log (this process's commits and every other one's), and a lease
call waiting for work sleeps at most until the earliest of them (`TaskFinder.next_run_at`).
"""

from __future__ import annotations

from taskhub.errors import TaskHubError
from taskhub.server.model import Task, TaskKind, format_time

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
