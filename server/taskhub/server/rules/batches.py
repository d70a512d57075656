"""The batch rules: a batch opens where tasks start processing and closes where they stop, in the same unit of work.

A lease opens a batch of the tasks it leased; a server-run task opens one of its own. Its tasks
carry the batch's uid in `extra["batchUid"]` (and a lease's worker in `extra["worker"]`) from then on (also once sent back to the queue, until
another batch takes them). Completion, expiry, release, a cancelation and a restart close it: the
counts and details are rebuilt from its tasks' states at that moment and never change after.
Reads (`list_batches`, `get_batch`) and `batchUids` on task filters resolve through the membership.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from taskhub.errors import TaskHubError
from taskhub.server.batch import Batch, BatchQuery, ProgressStep, progress_problem
from taskhub.server.model import Scope, Task, TaskKind, TaskQuery, TaskStatus, TaskType, batch_group
from taskhub.server.rules.batch_details import accumulate
from taskhub.server.storage.contract import Reader, TaskFinder, Transaction

ENQUEUED = frozenset({TaskStatus.ENQUEUED})


@dataclass(slots=True)
class BatchPage:
    """One page of a batch listing."""

    results: list[Batch]
    total: int
    limit: int
    from_uid: int | None
    next_uid: int | None


def batch_uid_of(task: Task) -> int | None:
    return None if task.extra is None else task.extra.get("batchUid")


def _counts(batch: Batch, tasks: list[Task], *, ended: bool) -> None:
    """Rebuilds a batch's counts and details from its tasks' current states."""
    tasks = sorted(tasks, key=lambda t: t.uid)
    statuses: dict[TaskStatus, int] = {}
    types: dict[TaskKind, int] = {}
    indexes: dict[str, int] = {}
    for task in tasks:
        statuses[task.status] = statuses.get(task.status, 0) + 1
        types[task.type] = types.get(task.type, 0) + 1
        if task.index_uid is not None:
            indexes[task.index_uid] = indexes.get(task.index_uid, 0) + 1
    batch.total, batch.statuses, batch.types, batch.index_uids = len(tasks), statuses, types, indexes
    # Meilisearch's types' details only: a registered type's are free JSON, with no rule to sum them by.
    batch.details = accumulate((t.details for t in tasks if isinstance(t.type, TaskType)), ended=ended)
    # One index when every task has that index: what scoped keys and `indexUids` see.
    batch.index_uid = next(iter(indexes)) if len(indexes) == 1 and all(t.index_uid for t in tasks) else None
    if tasks:
        batch.enqueued_first = min(t.enqueued_at for t in tasks)
        batch.enqueued_last = max(t.enqueued_at for t in tasks)


def open_batch(
    tx: Transaction,
    tasks: list[Task],
    started_at: int,
    strategy: str,
    *,
    lease: str | None = None,
    worker: str | None = None,
) -> Batch:
    """A new batch of these tasks, which must be about to be saved: each gets the batch's uid."""
    batch = Batch(
        uid=-1,
        started_at=started_at,
        strategy=strategy,
        total=0,
        statuses={},
        types={},
        index_uids={},
        details={},
        enqueued_first=0,
        enqueued_last=0,
        index_uid=None,
        progress=[],
        lease=lease,
        worker=worker,
        lease_state=None if lease is None else "active",
    )
    _counts(batch, tasks, ended=False)
    tx.batches.insert(batch, [t.uid for t in tasks])
    for task in tasks:
        task.extra = {**(task.extra or {}), "batchUid": batch.uid}
        if worker:  # the worker holding it now, shown until another takes it (Task.worker)
            task.extra["worker"] = worker
    return batch


def close_batch(
    tx: Transaction, uid: int | None, now: int, lease_state: str | None = None, tasks: list[Task] | None = None
) -> None:
    """Ends a batch; `tasks`: its tasks' current states when the caller holds them all, else they are read."""
    batch = None if uid is None else tx.batches.get(uid)
    if batch is None or batch.finished_at is not None:
        return
    if tasks is None:
        tasks = tx.tasks.get_many(tx.batches.task_uids_of([batch.uid]))
    _counts(batch, tasks, ended=True)
    batch.finished_at, batch.progress = now, None
    if batch.lease is not None:
        batch.lease_state = lease_state
    tx.batches.save(batch)


def close_open_batches(tx: Transaction, clock: Callable[[], int]) -> None:
    """On start: batches open when the server stopped end `lost` (their tasks were sent back). The clock is
    read only when there are some."""
    open_uids = tx.batches.open_uids()
    if open_uids:
        now = clock()
        for uid in open_uids:
            close_batch(tx, uid, now, "lost")


def check_progress(steps: list[ProgressStep]) -> None:
    problem = progress_problem(steps)
    if problem is not None:
        raise TaskHubError("invalid_batch_progress", problem)


def alone(task: Task) -> str:
    return (
        f"created batch containing only task with id {task.uid} of type `{task.type.label}`"
        " that cannot be batched with any other task."
    )


def lease_strategy(
    tx: Transaction, finder: TaskFinder, chosen: list[Task], size: int, types: frozenset[TaskKind] | None
) -> str:
    """Why a leased batch holds what it holds, in Meilisearch's words where the situation is the same."""
    head, last = chosen[0], chosen[-1]
    group = batch_group(head.type)
    if group is None or head.index_uid is None:
        return alone(head)
    if len(chosen) >= size:
        return f"batched up to configured batch limit of {size} tasks"
    after = finder.uids(
        TaskQuery(statuses=ENQUEUED, index_uids=frozenset({head.index_uid})), limit=1, after_uid=last.uid
    )
    following = tx.tasks.get(after[0]) if after else None
    if following is None:
        # The finder has not seen this unit of work: the batch's own tasks still count as enqueued.
        if finder.count(TaskQuery(statuses=ENQUEUED)) <= len(chosen):
            return "batched all enqueued tasks"
        return f"batched all enqueued tasks for index `{head.index_uid}`"
    other = batch_group(following.type)
    stop = f"stopped before task with id {following.uid} because"
    if other == "settings" and group == "documents":
        return f"{stop} it is a settings change which cannot be batched with document operations"
    if other == "documents" and group == "settings":
        return f"{stop} it is a document operation which cannot be batched with settings changes"
    if other is None:
        return f"{stop} it is a task of type `{following.type.label}` that cannot be batched with any other task"
    if other != group:
        return f"{stop} it is a task of type `{following.type.label}`, which is not batched with `{head.type.label}`"
    if types is not None and following.type not in types:
        return f"{stop} this worker does not take tasks of type `{following.type.label}`"
    return f"{stop} an index swap must run first"


# -- reads ---------------------------------------------------------------------


def resolve_query(reader: Reader | Transaction, query: TaskQuery) -> TaskQuery:
    """A task query whose `batch_uids` became `uids` (the tasks those batches held), for a finder."""
    if query.batch_uids is None:
        return query
    members = frozenset(reader.batches.task_uids_of(query.batch_uids))
    uids = members if query.uids is None else members & query.uids
    return dataclasses.replace(query, uids=uids, batch_uids=None)


def batch_query(reader: Reader, query: TaskQuery) -> BatchQuery:
    """A task filter as a batch filter; `canceledBy` names the batches its succeeded cancelations ran in."""
    batch_uids = query.batch_uids
    if query.canceled_by is not None:
        ran = frozenset(
            uid
            for task in reader.tasks.get_many(query.canceled_by)
            if task.type == TaskType.TASK_CANCELATION
            and task.status == TaskStatus.SUCCEEDED
            and (uid := batch_uid_of(task)) is not None
        )
        batch_uids = ran if batch_uids is None else batch_uids & ran
    return BatchQuery(
        batch_uids=batch_uids,
        task_uids=query.uids,
        index_uids=query.index_uids,
        statuses=query.statuses,
        types=query.types,
        before_enqueued_at=query.before_enqueued_at,
        after_enqueued_at=query.after_enqueued_at,
        before_started_at=query.before_started_at,
        after_started_at=query.after_started_at,
        before_finished_at=query.before_finished_at,
        after_finished_at=query.after_finished_at,
        scope=query.scope,
    )


def list_batches(
    reader: Reader, query: TaskQuery, limit: int, from_uid: int | None, reverse: bool, budget: int
) -> BatchPage:
    """One page of batches, read in one committed state."""
    with reader.snapshot():
        found = batch_query(reader, query)
        uids, total = reader.batch_finder.page(found, limit=limit, from_uid=from_uid, reverse=reverse)
        rows, cut = reader.batches.get_page(uids, budget)
    results, extra = rows[:limit], rows[limit:]
    next_uid = cut if cut is not None else (extra[0].uid if extra else None)
    return BatchPage(results, total, limit, results[0].uid if results else None, next_uid)


def get_batch(reader: Reader, uid: int, scope: Scope | None) -> Batch:
    batch = reader.batches.get(uid)
    if batch is None or not (scope is None or scope.allows(batch.index_uid)):
        raise TaskHubError("batch_not_found", f"Batch `{uid}` not found.")
    return batch
