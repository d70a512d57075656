"""The tasks the server runs itself: cancelations, deletions, snapshots and dumps, and the automatic cleanup.

A cancelation or deletion matches its tasks when it is enqueued (older tasks only) and
keeps that set; running it later applies it to what is still there. A cancelation
stops a processing batch whole: the batch's lease ends and its other tasks go back.
A deletion removes finished tasks only. Each run is one unit of work, the leader's: each checks
this replica still leads (rules/leadership.py), so a leader that lost its term runs no more.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

from taskhub.errors import TaskHubError
from taskhub.server.model import SERVER_PRIORITY, Task, TaskQuery, TaskStatus, TaskType, finished_details, format_time
from taskhub.server.rules import batching, exports
from taskhub.server.rules.batches import alone, batch_uid_of, close_batch, close_open_batches, open_batch, resolve_query
from taskhub.server.rules.leasing import cancel_leases_of, requeue
from taskhub.server.rules.units import Units
from taskhub.server.storage.contract import TaskFinder, Transaction

log = logging.getLogger(__name__)

FINISHED = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED})
UNFINISHED = frozenset({TaskStatus.ENQUEUED, TaskStatus.PROCESSING})
MATCH_LIMIT = 2**32  # every uid there can be
PROCESSING = frozenset({TaskStatus.PROCESSING})
SERVER_TYPES = frozenset(SERVER_PRIORITY)


class ServerTasks:
    """Enqueues and runs the server's own tasks."""

    def __init__(
        self,
        units: Units,
        clock: Callable[[], int],
        *,
        snapshots_dir: str,
        dumps_dir: str,
        cleanup_threshold: int,
        cleanup_batch: int,
    ) -> None:
        self.units = units
        self.clock = clock
        self.snapshots_dir = snapshots_dir
        self.dumps_dir = dumps_dir
        self.cleanup_threshold = cleanup_threshold
        self.cleanup_batch = cleanup_batch

    # -- enqueue ----------------------------------------------------------

    async def cancel_tasks(self, query: TaskQuery, original_filter: str | None = None) -> Task:
        return await self._enqueue_matching(TaskType.TASK_CANCELATION, "canceledTasks", query, original_filter)

    async def delete_tasks(self, query: TaskQuery, original_filter: str | None = None) -> Task:
        return await self._enqueue_matching(TaskType.TASK_DELETION, "deletedTasks", query, original_filter)

    async def _enqueue_matching(
        self, type_: TaskType, counter: str, query: TaskQuery, original_filter: str | None
    ) -> Task:
        if query.is_empty():
            verb = "cancel" if type_ == TaskType.TASK_CANCELATION else "delete"
            raise TaskHubError(
                "missing_task_filters",
                f"Query parameters to filter the tasks to {verb} are missing. Available query parameters are:"
                " `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`,"
                " `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
            )
        original = original_filter if original_filter is not None else query.query_string()
        return await self.units.run(self._insert_matching, type_, counter, query, original, self.clock())

    def _insert_matching(
        self, tx: Transaction, type_: TaskType, counter: str, query: TaskQuery, original: str, now: int
    ) -> Task:
        """The new task and the set of older tasks it matches, atomically."""
        self.units.sync(tx)
        older = dataclasses.replace(resolve_query(tx, query), below_uid=tx.tasks.next_uid())
        matched = self.units.finder.uids(older, limit=MATCH_LIMIT)
        details = {"matchedTasks": len(matched), counter: None, "originalFilter": original}
        [task] = tx.tasks.insert([(None, type_, details, None)], now)
        tx.tasks.save_matches(task.uid, matched)
        return task

    # -- run --------------------------------------------------------------

    async def next(self) -> Task | None:
        def pick(tx: Transaction) -> Task | None:
            self.units.sync(tx)
            return batching.next_server_task(tx, self.units.finder)

        return await self.units.run_led(pick)

    async def run(self, task: Task, now: int) -> None:
        assert task.type in SERVER_PRIORITY
        if not await self.units.run_led(_start, task.uid, now):
            return  # another server runs it
        if task.type == TaskType.TASK_CANCELATION:
            await self.units.run_led(_run_cancelation, task.uid, now)
        elif task.type == TaskType.TASK_DELETION:
            await self.units.run_led(_run_deletion, task.uid, now)
        else:
            await self._run_export(task, now)

    async def _run_export(self, task: Task, now: int) -> None:
        """Snapshots and dumps: the file is written first, the task finishes after."""
        storage = self.units.storage
        try:
            if task.type == TaskType.SNAPSHOT_CREATION:
                await self.units.call(exports.write_snapshot, storage, self.snapshots_dir, now)
                details = None
            else:
                dump_uid = await self.units.call(exports.write_dump, storage, self.dumps_dir, now)
                details = {"dumpUid": dump_uid}
            await self.units.run_led(_finish, task.uid, self.clock(), details, None)
        except OSError as exc:
            log.exception(
                "%s %d failed",
                task.type.label,
                task.uid,
                extra={"event": "task_failed", "uid": task.uid, "type": task.type.label, "code": "io_error"},
            )
            error = {
                "message": f"Could not write the {task.type.label} file: {exc.strerror or exc}.",
                "code": "io_error",
                "type": "system",
                "link": "https://docs.meilisearch.com/errors#io_error",
            }
            await self.units.run_led(_finish, task.uid, self.clock(), task.details, error)

    async def clean_up(self, task_count: int) -> bool:
        """At `cleanup_threshold` tasks, enqueues a deletion of the oldest finished ones; answers if it did."""
        if task_count < self.cleanup_threshold:
            return False
        oldest = self.units.finder.uids(TaskQuery(statuses=FINISHED), limit=self.cleanup_batch)
        # At least two, or the queue would only ever delete the previous cleanup's own task.
        if len(oldest) < 2:
            return False
        newest = await self.units.read(lambda reader: reader.tasks.get(oldest[-1]))
        if newest is None:
            return False
        original = "?" + urllib.parse.urlencode(
            {"beforeEnqueuedAt": format_time(newest.enqueued_at + 1), "statuses": "succeeded,failed,canceled"}
        )
        log.info(
            "the queue holds %d tasks or more: deleting the %d oldest finished ones",
            self.cleanup_threshold,
            len(oldest),
            extra={"event": "cleanup", "threshold": self.cleanup_threshold, "deleted": len(oldest)},
        )
        query = TaskQuery(uids=frozenset(oldest))
        await self.units.run_led(
            self._insert_matching, TaskType.TASK_DELETION, "deletedTasks", query, original, self.clock()
        )
        return True


def _start(tx: Transaction, uid: int, now: int) -> bool:
    """The task starts if it still waits; answers whether it did."""
    task = tx.tasks.get(uid)
    if task is None or task.status != TaskStatus.ENQUEUED:
        return False
    task.status, task.started_at = TaskStatus.PROCESSING, now
    open_batch(tx, [task], now, alone(task))
    tx.tasks.save([task])
    return True


def _finish(tx: Transaction, uid: int, now: int, details: dict[str, Any] | None, error: dict[str, Any] | None) -> Task:
    """A processing task succeeded (no `error`) or failed."""
    task = tx.tasks.get(uid)
    assert task is not None
    task.status = TaskStatus.FAILED if error else TaskStatus.SUCCEEDED
    task.details = finished_details(task.type, details, success=error is None)
    task.error, task.finished_at = error, now
    saved = tx.tasks.save([task])[0]
    close_batch(tx, batch_uid_of(task), now)
    return saved


def _run_cancelation(tx: Transaction, uid: int, now: int) -> None:
    """The still-unfinished tasks the cancelation matched are canceled, and it succeeds."""
    task = tx.tasks.get(uid)
    assert task is not None
    # The canceled tasks join the cancelation's batch, as in Meilisearch (a stopped lease's batch counts them too).
    batch = batch_uid_of(task)
    canceled = tx.tasks.get_many(tx.tasks.matched_uids(uid), UNFINISHED)
    for target in canceled:
        target.status, target.canceled_by, target.finished_at = TaskStatus.CANCELED, uid, now
        target.details = finished_details(target.type, target.details, success=False)
        if batch is not None:
            target.extra = {**(target.extra or {}), "batchUid": batch}
    tx.tasks.save(canceled)
    if batch is not None:
        tx.batches.add_tasks(batch, [t.uid for t in canceled])
    cancel_leases_of(tx, canceled, now)
    _finish(tx, uid, now, {**(task.details or {}), "canceledTasks": len(canceled)}, None)


def _run_deletion(tx: Transaction, uid: int, now: int) -> None:
    """The finished tasks the deletion matched are deleted, and it succeeds."""
    deleted = tx.tasks.delete(tx.tasks.matched_uids(uid), FINISHED)
    tx.tasks.forget_matches(t.uid for t in deleted)
    tx.batches.forget_tasks(t.uid for t in deleted)
    task = tx.tasks.get(uid)
    assert task is not None
    _finish(tx, uid, now, {**(task.details or {}), "deletedTasks": len(deleted)}, None)


def recover(tx: Transaction, finder: TaskFinder, clock: Callable[[], int]) -> None:
    """On taking the lead from another replica: the server-run tasks it left processing are enqueued again,
    and their batches end `lost`. The caller synced `finder` in this unit of work."""
    uids = finder.uids(TaskQuery(statuses=PROCESSING, types=SERVER_TYPES), limit=MATCH_LIMIT)
    left = tx.tasks.get_many(uids, PROCESSING)
    if left:
        log.warning("taking the lead: %d server-run task(s) the last leader left processing run again", len(left))
    batches = {batch_uid_of(task) for task in left}
    requeue(tx, left)
    if batches:
        now = clock()  # read only when there are some
        for uid in batches:
            close_batch(tx, uid, now, "lost")


def requeue_processing(tx: Transaction, processing: list[int], clock: Callable[[], int]) -> None:
    """On start: whatever was processing when the server stopped is enqueued again, leases are lost and
    open batches end."""
    tx.leases.end_all("lost")
    requeue(tx, tx.tasks.get_many(processing, frozenset({TaskStatus.PROCESSING})))
    close_open_batches(tx, clock)
