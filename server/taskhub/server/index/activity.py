"""What an operator's view asks of the index: tasks finished per second, and counts per index.

Both read what the index keeps anyway. The finished dates of the window come from the hours'
buckets and the per-uid columns, then one `bincount` a status; the counts per index are the
sizes of the (index, status) bitmaps, never a pass over the tasks.
"""

from __future__ import annotations

import numpy as np

from taskhub.server.index.bitmaps import uids_of
from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import Scope, TaskQuery, TaskStatus

SECOND = 1_000_000
FINISHED = (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED)


def finished_per_second(
    index: TaskIndex, since: int, seconds: int, scope: Scope | None = None
) -> dict[TaskStatus, list[int]]:
    """`TaskFinder.finished_per_second` from the index (its caller holds the index's lock)."""
    query = TaskQuery(after_finished_at=since - 1, before_finished_at=since + seconds * SECOND, scope=scope)
    positions = uids_of(index.select(query)) - index.columns.base
    if not len(positions):
        return {}
    slots = (index.columns.arrays["finished_at"][positions] - since) // SECOND
    statuses = index.columns.arrays["status"][positions]
    counts: dict[TaskStatus, list[int]] = {}
    for status in FINISHED:
        chosen = slots[statuses == int(status)]
        if len(chosen):
            counts[status] = np.bincount(chosen, minlength=seconds).tolist()
    return counts


def counts_by_index(index: TaskIndex, scope: Scope | None = None) -> dict[str | None, dict[TaskStatus, int]]:
    """`TaskFinder.counts_by_index` from the sizes of the index's (index, status) bitmaps."""
    counts: dict[str | None, dict[TaskStatus, int]] = {}
    indexed: dict[TaskStatus, int] = {}
    for (name, status), uids in index.index_statuses.items():
        if uids:
            indexed[status] = indexed.get(status, 0) + len(uids)
            if scope is None or scope.allows(name):
                counts.setdefault(name, {})[status] = len(uids)
    if scope is None:  # global tasks: those of a status that no index holds; a scoped key never sees them
        rest = {s: len(uids) - indexed.get(s, 0) for s, uids in index.statuses.items()}
        if any(rest.values()):
            counts[None] = {s: n for s, n in rest.items() if n}
    return counts
