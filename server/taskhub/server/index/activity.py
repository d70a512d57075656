"""What an operator's view asks of the index: tasks finished per second, and counts per index.

Both read what the index keeps anyway. The finished dates of the window come from the hours'
buckets and the per-uid columns (copied under the index's lock), then one `bincount` over (second,
status) cells outside it; the counts per index are the sizes of the (index, status) bitmaps, never a
pass over the tasks.
"""

from __future__ import annotations

import numpy as np

from taskhub.server.index.bitmaps import uids_of
from taskhub.server.index.task_index import PAIR, TaskIndex
from taskhub.server.model import Scope, TaskQuery, TaskStatus

SECOND = 1_000_000
FINISHED = (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED)


def finished_rows(
    index: TaskIndex, since: int, seconds: int, scope: Scope | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The finished dates and statuses of the tasks finished in the window, copied out of the index (its caller
    holds the index's lock; the counting that follows needs it no more)."""
    query = TaskQuery(after_finished_at=since - 1, before_finished_at=since + seconds * SECOND, scope=scope)
    positions = uids_of(index.select(query)) - index.columns.base
    return index.columns.arrays["finished_at"][positions], index.columns.arrays["status"][positions]


def finished_per_second(
    times: np.ndarray, statuses: np.ndarray, since: int, seconds: int
) -> dict[TaskStatus, list[int]]:
    """`TaskFinder.finished_per_second` from `finished_rows`: one `bincount` over (second, status) cells."""
    if not len(times):
        return {}
    cells = (times - since) // SECOND * PAIR + statuses  # statuses are below PAIR
    table = np.bincount(cells, minlength=seconds * PAIR).reshape(seconds, PAIR)
    counts: dict[TaskStatus, list[int]] = {}
    for status in FINISHED:
        column = table[:, int(status)]
        if column.any():
            counts[status] = column.tolist()
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
