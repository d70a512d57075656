"""Which batch a worker leases next: the queue's ordering rules, asked of the finder and the tasks table.

- Server-run tasks (cancelations, deletions, snapshots, dumps) outrank every worker task:
  while one waits, no batch is leased.
- Per-index order: a task waits for every older unfinished task of its indexes. What runs
  holds its indexes (its own; a swap's, named in its details). A task not due yet (its
  `runAt` ahead: delayed, or backing off after a failure) holds nothing and is skipped.
- The batch is the oldest task a worker can take (its types, its indexes, its key's scope),
  and the tasks right after it in its index of the same batch group, up to a swap naming it.
  A registered type is a group of its own; its tasks of no index hold nothing and run alone,
  each in its own lease, side by side.

Called inside the unit of work that leases, after the finder took every commit: what
it answers is then true until that unit of work commits.
"""

from __future__ import annotations

from taskhub.server.model import (
    SERVER_PRIORITY,
    Scope,
    Task,
    TaskKind,
    TaskQuery,
    TaskStatus,
    TaskType,
    batch_group,
    task_indexes as indexes_of,
)
from taskhub.server.rules.delays import run_at_of
from taskhub.server.storage.contract import TaskFinder, Transaction

SCAN_LIMIT = 100_000  # tasks read looking for a batch's head, at most
SCAN_CHUNK = 16  # enqueued tasks read first looking for a batch's head
ENQUEUED = frozenset({TaskStatus.ENQUEUED})
PROCESSING = frozenset({TaskStatus.PROCESSING})
SWAPS = frozenset({TaskType.INDEX_SWAP})


def server_task_waiting(finder: TaskFinder) -> bool:
    return finder.count(TaskQuery(statuses=ENQUEUED, types=frozenset(SERVER_PRIORITY))) > 0


def next_server_task(tx: Transaction, finder: TaskFinder) -> Task | None:
    """The enqueued server-run task to run first: cancelations newest first, then by type, oldest first."""
    for type_ in SERVER_PRIORITY:
        newest = type_ == TaskType.TASK_CANCELATION
        waiting = finder.uids(TaskQuery(statuses=ENQUEUED, types=frozenset({type_})), limit=1, newest=newest)
        if waiting:
            return tx.tasks.get(waiting[0])
    return None


def next_batch(
    tx: Transaction,
    finder: TaskFinder,
    *,
    types: frozenset[TaskKind] | None,
    index_uids: frozenset[str] | None,
    scope: Scope | None,
    max_tasks: int,
    now: int | None = None,
) -> list[Task]:
    """The oldest runnable batch a worker can take (empty: nothing runnable); tasks not due at `now` are skipped."""
    if server_task_waiting(finder):
        return []
    due = _Due(now)
    head = _head(tx, finder, types, index_uids, scope, due)
    if head is None:
        return []
    return [head, *_followers(tx, finder, head, types, max_tasks - 1, due)]


class _Due:
    """What `now` is: the finder skips the tasks not due then, and a row read has the last word."""

    __slots__ = ("now",)

    def __init__(self, now: int | None) -> None:
        self.now = now

    def waits(self, task: Task) -> bool:
        run_at = run_at_of(task)
        return run_at is not None and self.now is not None and run_at > self.now


def _busy_indexes(tx: Transaction, finder: TaskFinder) -> set[str]:
    """The indexes held by what runs: its own, read off the finder; a swap's, read off its details."""
    busy = finder.index_uids(TaskQuery(statuses=PROCESSING))
    swaps = finder.uids(TaskQuery(statuses=PROCESSING, types=SWAPS), limit=SCAN_LIMIT)
    for swap in tx.tasks.get_many(swaps):
        busy |= indexes_of(swap.index_uid, swap.type, swap.details)
    return busy


def _head(
    tx: Transaction,
    finder: TaskFinder,
    types: frozenset[TaskKind] | None,
    index_uids: frozenset[str] | None,
    scope: Scope | None,
    due: _Due,
) -> Task | None:
    """The oldest enqueued task whose indexes are free and that heads its indexes' queues."""
    blocked = _busy_indexes(tx, finder)
    # Only tasks of the indexes this worker may take, and swaps (which name their indexes in their
    # details), can qualify; the others touch none of those indexes, so cannot hold a candidate back.
    # Tasks of busy indexes wait for them (per-index uid order): they are skipped unread. A swap
    # belongs to no index, so it is always read, and the indexes it names are busy from then on.
    narrow = index_uids is not None or scope is not None
    read, chunk = 0, SCAN_CHUNK
    after: int | None = None
    while read < SCAN_LIMIT:
        # The head is most often among the first few: read a few rows, then more and more.
        query = TaskQuery(
            statuses=ENQUEUED,
            index_uids=index_uids,
            scope=scope,
            not_index_uids=frozenset(blocked),
            due_at=due.now,
        )
        uids = finder.uids(query, limit=chunk, after_uid=after)
        if narrow:
            swaps = finder.uids(TaskQuery(statuses=ENQUEUED, types=SWAPS, due_at=due.now), limit=chunk, after_uid=after)
            uids = sorted(set(uids) | set(swaps))[:chunk]
        if not uids:
            return None
        read, chunk, after = read + len(uids), min(chunk * 4, 4_096), uids[-1]
        for task in tx.tasks.get_many(uids):
            if task.status != TaskStatus.ENQUEUED or due.waits(task):
                continue  # the row, read in this unit of work, outranks the read model; a waiting task holds nothing
            keys = indexes_of(task.index_uid, task.type, task.details)
            takeable = (
                not keys & blocked
                and (types is None or task.type in types)
                and (index_uids is None or keys <= index_uids)
                and (scope is None or (keys and all(scope.allows(k) for k in keys)))
            )
            if takeable:
                return task
            # Later tasks of these indexes must wait for this one: per-index uid order.
            blocked |= keys
    return None


def _followers(
    tx: Transaction, finder: TaskFinder, head: Task, types: frozenset[TaskKind] | None, room: int, due: _Due
) -> list[Task]:
    """The enqueued tasks right after `head` in its index that can join its batch."""
    group = batch_group(head.type)
    # A batch is a run of one index's tasks: a task of no index (a registered type's, which runs
    # in parallel with its like) is a batch alone, so that other workers take the ones after it.
    if group is None or room <= 0 or head.index_uid is None:
        return []
    # An enqueued swap touching this index ends the run of batchable tasks.
    swaps = finder.uids(TaskQuery(statuses=ENQUEUED, types=SWAPS), limit=SCAN_LIMIT, after_uid=head.uid)
    stop = min(
        (s.uid for s in tx.tasks.get_many(swaps) if head.index_uid in indexes_of(None, TaskType.INDEX_SWAP, s.details)),
        default=None,
    )
    queue = TaskQuery(statuses=ENQUEUED, index_uids=frozenset({head.index_uid}), due_at=due.now)
    followers: list[Task] = []
    for task in tx.tasks.get_many(finder.uids(queue, limit=room, after_uid=head.uid)):
        if due.waits(task):
            continue  # not due: it holds no place in the index's order
        if (
            task.status != TaskStatus.ENQUEUED
            or (stop is not None and task.uid > stop)
            or batch_group(task.type) != group
            or (types is not None and task.type not in types)
        ):
            break
        followers.append(task)
    return followers
