"""Requeue: failed or canceled tasks matching a filter, enqueued again as new tasks.

Answered at once, in one unit of work, for at most MAX_REQUEUE tasks: the filter is narrowed to
failed and canceled tasks (whatever statuses it names), and past the cap nothing is requeued
and the caller is told to narrow it. A requeue is not idempotent (the originals stay failed or
canceled, so the same filter matches them again), which is why it is all or nothing rather than
"the first thousand". Each new task keeps its original's index, type, details (their outputs
back to null) and the extra fields that describe the task rather than a run of it, and records
`requeuedFrom`. Cancelations and deletions are never requeued: they are bound to what matched
them when they were enqueued. A caller requeues what it sees (its key's indexes) and may enqueue:
a failed dump or snapshot needs `dumps.create` or `snapshots.create` besides `tasks.requeue`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from taskhub.errors import TaskHubError
from taskhub.server.model import CustomType, Task, TaskKind, TaskQuery, TaskStatus, TaskType
from taskhub.server.rules.auth import EVERYONE, Principal, enqueue_action
from taskhub.server.rules.batches import resolve_query
from taskhub.server.rules.units import DISK_FULL, Units
from taskhub.server.storage.contract import NewTask, Transaction
from taskhub.server.task_types import TaskTypes

MAX_REQUEUE = 1_000
REQUEUED = frozenset({TaskStatus.FAILED, TaskStatus.CANCELED})
NEVER_REQUEUED = frozenset({TaskType.TASK_CANCELATION, TaskType.TASK_DELETION})
# Details a run fills in: null again on the new task, as on any task not run yet.
OUTPUTS = frozenset({"indexedDocuments", "deletedDocuments", "canceledTasks", "deletedTasks", "dumpUid"})
# Extra fields that belong to one run of a task (its schedule, attempts, batch), not to what it does.
RUN_FIELDS = frozenset({"runAt", "attempts", "lastError", "batchUid", "requeuedFrom", "worker"})


class Requeuing:
    """Requeues failed and canceled tasks."""

    def __init__(self, units: Units, clock: Callable[[], int], *, max_db_size: int | None, types: TaskTypes) -> None:
        self.units = units
        self.clock = clock
        self.max_db_size = max_db_size
        self.types = types

    async def requeue_tasks(self, query: TaskQuery, *, caller: Principal = EVERYONE) -> list[Task]:
        """The new tasks, oldest original first; `query.scope` limits what is seen, as in a list, and
        `caller`'s actions which types it may enqueue again."""
        if query.is_empty():
            raise TaskHubError(
                "missing_task_filters",
                "Query parameters to filter the tasks to requeue are missing. Available query parameters are:"
                " `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`,"
                " `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
            )
        statuses = REQUEUED if query.statuses is None else query.statuses & REQUEUED
        narrowed = dataclasses.replace(query, statuses=statuses)
        return await self.units.run(self._requeue, narrowed, caller, self.clock())

    def _requeue(self, tx: Transaction, query: TaskQuery, caller: Principal, now: int) -> list[Task]:
        self.units.sync(tx)  # the finder as of this unit of work: what it matches is still failed or canceled
        query = resolve_query(tx, query)  # `batchUids`: the tasks those batches held, which the finder knows
        uids = self.units.finder.uids(query, limit=MAX_REQUEUE + 1)
        if len(uids) > MAX_REQUEUE:
            matched = self.units.finder.count(query)
            raise TaskHubError(
                "too_many_tasks_to_requeue",
                f"{matched:,} failed or canceled tasks match; at most {MAX_REQUEUE:,} are requeued at once."
                " Narrow the filter (`uids`, `indexUids`, `types`, dates) and requeue in parts.",
            )
        originals = [
            t
            for t in tx.tasks.get_many(uids, REQUEUED)
            if t.type not in NEVER_REQUEUED and _may_requeue(caller, t.type) and self._enqueueable(t.type)
        ]
        if not originals:
            return []
        if self.max_db_size is not None and tx.used_bytes() >= self.max_db_size:
            raise TaskHubError("no_space_left_on_device", DISK_FULL)
        return tx.tasks.insert([_again(task) for task in originals], now)

    def _enqueueable(self, type_: TaskKind) -> bool:
        """Meilisearch's types, and the registered ones this server still takes (`--task-types`)."""
        return not isinstance(type_, CustomType) or self.types.enqueueable(type_.label) is not None


def _may_requeue(caller: Principal, type_: TaskKind) -> bool:
    """`tasks.requeue` covers what `tasks.enqueue` does; a dump or a snapshot needs its own action too."""
    action = enqueue_action(type_)
    return action == "tasks.enqueue" or caller.allows(action)


def _again(task: Task) -> NewTask:
    """What enqueues `task` anew: its index, type, details without outputs (a registered type's as they are),
    extra fields without run fields."""
    details = task.details
    if details is not None and not isinstance(task.type, CustomType):
        details = {k: (None if k in OUTPUTS else v) for k, v in details.items()}
    extra: dict[str, Any] = {k: v for k, v in (task.extra or {}).items() if k not in RUN_FIELDS}
    extra["requeuedFrom"] = task.uid
    return task.index_uid, task.type, details, extra
