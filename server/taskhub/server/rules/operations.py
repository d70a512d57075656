"""The operator's view: which workers hold which leases, tasks finished per second, and tasks per index.

Reads only, each from what the server keeps anyway: the active leases through their index (and
the tasks they hold), the finished dates and the (index, status) counts through the finder. A key
scoped to some indexes sees the tasks of those alone, and a lease only through the tasks it sees.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskhub.errors import TaskHubError
from taskhub.server.model import Scope, Task, TaskStatus
from taskhub.server.storage.contract import Reader, TaskFinder

SECOND = 1_000_000
# The activity window, in seconds: 15 minutes unless asked otherwise, an hour at most.
DEFAULT_SECONDS, MAX_SECONDS = 900, 3_600
# How many leases one answer lists, unless asked otherwise, and at most.
DEFAULT_LEASES, MAX_LEASES = 100, 1_000


@dataclass(slots=True)
class HeldLease:
    """A worker's hold on a batch: its tasks (those the caller sees), since and until when (microseconds)."""

    worker: str
    batch_uid: int | None
    since: int
    deadline: int
    tasks: list[Task]


@dataclass(slots=True)
class Activity:
    """Finished tasks per second from `since` by status (a list per finished status), and counts per index."""

    since: int
    finished: dict[TaskStatus, list[int]]
    indexes: dict[str | None, dict[TaskStatus, int]]


def held_leases(reader: Reader, scope: Scope | None) -> list[HeldLease]:
    """The active leases, oldest first, with the processing tasks each holds, read in one committed state."""
    with reader.snapshot():
        held = reader.leases.held()
        tasks = {t.uid: t for t in reader.tasks.get_many(uid for _, uids in held for uid in uids)}
    leases = []
    for lease, uids in held:
        seen = [tasks[uid] for uid in uids if uid in tasks and (scope is None or scope.allows(tasks[uid].index_uid))]
        if scope is not None and not seen:
            continue
        # Its tasks started when it was taken; a lease left with none started when its duration says.
        started = [t.started_at for t in seen if t.started_at is not None]
        since = min(started, default=lease.deadline - lease.duration)
        leases.append(HeldLease(lease.worker or "", lease.batch_uid, since, lease.deadline, seen))
    leases.sort(key=lambda lease: (lease.since, -1 if lease.batch_uid is None else lease.batch_uid))
    return leases


def lease_limit(limit: int | None) -> int:
    """The number of leases asked, checked: 1 to MAX_LEASES, DEFAULT_LEASES when unset."""
    if limit is None:
        return DEFAULT_LEASES
    if not 1 <= limit <= MAX_LEASES:
        raise TaskHubError(
            "invalid_lease_limit",
            f"Invalid value at `.limit`: a lease list holds 1 to {MAX_LEASES} leases, not {limit}.",
        )
    return limit


def window(seconds: int | None) -> int:
    """The seconds asked, checked: 1 to MAX_SECONDS, DEFAULT_SECONDS when unset."""
    if seconds is None:
        return DEFAULT_SECONDS
    if not 1 <= seconds <= MAX_SECONDS:
        raise TaskHubError(
            "invalid_activity_seconds",
            f"Invalid value at `.seconds`: the activity covers 1 to {MAX_SECONDS} seconds, not {seconds}.",
        )
    return seconds


def activity(finder: TaskFinder, now: int, seconds: int, scope: Scope | None) -> Activity:
    """The `seconds` whole seconds up to and including the current one, and the counts per index."""
    since = (now // SECOND + 1 - seconds) * SECOND
    return Activity(since, finder.finished_per_second(since, seconds, scope), finder.counts_by_index(scope))
