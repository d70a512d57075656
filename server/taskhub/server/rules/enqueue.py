"""Enqueueing: checked items stored in group commits, and the queue-full rule.

Every enqueue waiting when a commit starts goes into that one transaction (one fsync),
side by side with consecutive uids; an enqueue is answered once its commit is durable.
A full queue (its database past `max_db_size`) refuses new tasks; before refusing, the
change log is pruned, so the log alone never holds the queue full. An enqueue with an
idempotency key is looked up and recorded in the same commit (rules/idempotency.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from taskhub.errors import TaskHubError
from taskhub.server.model import Task, TaskKind
from taskhub.server.rules import idempotency
from taskhub.server.rules.auth import EVERYONE, Principal, enqueue_action, invalid_key
from taskhub.server.rules.delays import checked_run_at
from taskhub.server.rules.details import enqueue_details
from taskhub.server.rules.idempotency import Claim
from taskhub.server.rules.retries import RetryPolicies, RetryPolicy
from taskhub.server.rules.units import DISK_FULL, Units
from taskhub.server.storage.contract import NewTask, Transaction

log = logging.getLogger(__name__)

MAX_ENQUEUE_BATCH = 1_000
# One enqueue: (type, index uid, details, extra fields or None).
Item = tuple[TaskKind, str | None, dict[str, Any] | None, dict[str, Any] | None]
# Seconds an enqueue may wait for others to share its commit, when the queue is busy.
DEFAULT_COMMIT_WINDOW = 0.005


class Enqueuing:
    """Group commits of new tasks."""

    def __init__(
        self,
        units: Units,
        clock: Callable[[], int],
        *,
        max_db_size: int | None,
        watch_retention: int,
        watch_retention_bytes: int | None,
        commit_window: float,
        policies: RetryPolicies | None = None,
        idempotency_ttl: int = idempotency.DEFAULT_TTL,
    ) -> None:
        self.units = units
        self.idempotency_ttl = idempotency_ttl
        self.clock = clock
        self.policies = policies or RetryPolicies(RetryPolicy())
        self.max_db_size = max_db_size
        self.watch_retention = watch_retention
        self.watch_retention_bytes = watch_retention_bytes
        # Enqueues waiting for the next group commit, and whether one is running or due.
        self._pending: list[tuple[list[NewTask], Claim | None, asyncio.Future[list[Task]]]] = []
        self._flushing = False
        # While fewer enqueues wait than shared the last commit: the timer that ends the wait for more.
        self.commit_window = commit_window
        self._gathering: asyncio.TimerHandle | None = None
        self._commit: asyncio.Future[list[list[Task] | TaskHubError]] | None = None
        self._gather_target = 1
        # Whether the last commit found the queue full: said once when it fills, once when it has room again.
        self.full = False

    async def enqueue(
        self,
        type_: TaskKind,
        index_uid: str | None,
        details: dict[str, Any] | None,
        *,
        caller: Principal = EVERYONE,
        extra: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Enqueues one task for `caller`, who needs the type's action and, if scoped, the index.

        `extra`: fields beyond Meilisearch's to store with it (`customMetadata`, checked by the edge; `runAt` in
        microseconds and `retry`, a retry policy's fields in `retries.checked_override`'s shape, checked here).
        With `idempotency_key`, the same request again answers the first task and enqueues nothing.
        """
        items = [_checked(type_, index_uid, details, caller, self._later(type_, extra))]
        return (await self._group_commit(items, _claim(idempotency_key, caller, items, batch=False)))[0]

    def _later(self, type_: TaskKind, extra: dict[str, Any] | None) -> dict[str, Any] | None:
        """`extra` with its delayed run and retry policy checked: a `runAt` near now, a policy that fits the type's."""
        if not extra:
            return extra
        if extra.get("runAt") is not None:
            checked_run_at(type_, extra["runAt"], self.clock())
        if extra.get("retry"):
            self.policies.checked(type_.label, extra["retry"])
        return extra

    async def enqueue_many(
        self,
        items: list[tuple[TaskKind, str | None, dict[str, Any] | None] | Item],
        *,
        caller: Principal = EVERYONE,
        idempotency_key: str | None = None,
    ) -> list[Task]:
        """Enqueues tasks of (type, index uid, details[, extra]), all in one transaction, with consecutive uids.

        Every item is checked before any is stored, `caller`'s rights included: one bad item
        refuses them all, its position at the head of the message. One `idempotency_key` covers them all.
        """
        if not 1 <= len(items) <= MAX_ENQUEUE_BATCH:
            raise TaskHubError(
                "invalid_task_batch",
                f"Give from 1 to {MAX_ENQUEUE_BATCH:,} tasks to enqueue at once, not {len(items):,}.",
            )
        checked: list[NewTask] = []
        for position, item in enumerate(items):
            type_, index_uid, details, *rest = item
            try:
                checked.append(
                    _checked(type_, index_uid, details, caller, self._later(type_, rest[0] if rest else None))
                )
            except TaskHubError as error:
                raise error.within(f"tasks[{position}]") from None
        return await self._group_commit(checked, _claim(idempotency_key, caller, checked, batch=True))

    async def _group_commit(self, items: list[NewTask], claim: Claim | None = None) -> list[Task]:
        """Stores checked items in the next group commit, side by side; answers their tasks once durable."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Task]] = loop.create_future()
        self._pending.append((items, claim, done))
        if not self._flushing:
            # One loop turn later, so producers woken together share the transaction.
            self._flushing = True
            loop.call_soon(self._flush)
        elif self._gathering is not None and len(self._pending) >= self._gather_target:
            self._gathering.cancel()
            self._gathering = None
            loop.call_soon(self._flush)
        return await done

    def _flush(self) -> None:
        """Group commit: every enqueue waiting now goes into one transaction on the store thread.

        Enqueues that arrive while it runs wait for the next one, so under load each
        fsync carries many tasks and an idle queue still commits each at once.
        `_flushing` stays true from the first waiting enqueue until nothing waits.
        """
        if not self._pending:
            self._flushing = False
            return
        batch, self._pending = self._pending, []
        self._gather_target = len(batch) + 1
        self.units.meter.group_commit(sum(len(items) for items, _, _ in batch))
        # A full queue refuses new work; cancelations and deletions, which free it, still go through.
        job = self._commit = asyncio.ensure_future(
            self.units.run(
                _insert,
                [(items, claim) for items, claim, _ in batch],
                self.clock(),
                self.max_db_size,
                self.idempotency_ttl,
                first=True,
                make_room=self._make_room,
            )
        )

        def settle(job: asyncio.Future[list[list[Task] | TaskHubError]]) -> None:
            self._commit = None
            error = None if job.cancelled() else job.exception()
            if not job.cancelled():
                self._say_room(isinstance(error, TaskHubError) and error.code == "no_space_left_on_device")
            for position, (_, _, done) in enumerate(batch):
                if done.done():
                    pass
                elif job.cancelled():
                    done.cancel()
                elif error is not None:
                    done.set_exception(error)
                else:
                    answer = job.result()[position]
                    if isinstance(answer, TaskHubError):
                        done.set_exception(answer)
                    else:
                        done.set_result(answer)
            self._next_batch()

        job.add_done_callback(settle)

    def _say_room(self, full: bool) -> None:
        """Logs the queue filling up and having room again, once each time."""
        if full and not self.full:
            log.warning(
                "the queue is full (its database reached --max-task-db-size): enqueues are refused until tasks"
                " are deleted",
                extra={"event": "queue_full", "max_db_size": self.max_db_size},
            )
        elif self.full and not full:
            log.info("the queue has room again: enqueues are taken", extra={"event": "queue_has_room"})
        self.full = full

    def _make_room(self) -> bool:
        """On the store thread, when the queue is full: the change log is pruned; answers whether it freed any.

        The prune is a transaction of its own, so what it frees stays free even if the queue is still full.
        """
        # Not past what the slowest live replica has followed: the byte budget still wins over it, as in the tick.
        changes = self.units.storage.log
        slowest = self.units.replica.slowest
        return changes.prune_changes(self.watch_retention, self.watch_retention_bytes, keep_after=slowest) > 0

    def _next_batch(self) -> None:
        """After a commit: the next one now, or once one more enqueue waits than shared this one.

        Under load the few that arrived during a commit wait (at most `commit_window`)
        for the producers its answers set free: one big commit costs the event loop far
        less than many small ones (each a hop to the store thread and back, and a burst
        of answers of its own). A lone producer never waits: nothing is pending when its
        commit ends.
        """
        if self._pending and len(self._pending) < self._gather_target and self.commit_window > 0:
            self._gathering = asyncio.get_running_loop().call_later(self.commit_window, self._gathered)
        else:
            self._flush()

    def _gathered(self) -> None:
        self._gathering = None
        self._flush()

    async def drain(self) -> None:
        """Waits for the group commits under way; enqueues still waiting for company commit now."""
        while self._flushing:
            if self._gathering is not None:
                self._gathering.cancel()
                self._gathering = None
                self._flush()
            elif self._commit is not None:
                await asyncio.wait([self._commit])  # its `settle` runs first and starts what comes next
            else:
                await asyncio.sleep(0)  # a flush is due this loop turn


def _insert(
    tx: Transaction,
    entries: list[tuple[list[NewTask], Claim | None]],
    now: int,
    max_db_size: int | None,
    idempotency_ttl: int,
) -> list[list[Task] | TaskHubError]:
    """One group commit, an answer per enqueue; past `max_db_size` of used database, nothing is inserted and the
    queue is full."""

    def check_room() -> None:
        if max_db_size is not None and tx.used_bytes() >= max_db_size:
            raise TaskHubError("no_space_left_on_device", DISK_FULL)

    if all(claim is None for _, claim in entries):  # the common case: one insert, nothing looked up
        check_room()
        tasks = tx.tasks.insert([item for items, _ in entries for item in items], now)
        answers: list[list[Task] | TaskHubError] = []
        start = 0
        for items, _ in entries:
            answers.append(tasks[start : start + len(items)])
            start += len(items)
        return answers
    return idempotency.settle(tx, entries, now, idempotency_ttl, check_room)


def _claim(key: str | None, caller: Principal, items: list[NewTask], *, batch: bool) -> Claim | None:
    return None if key is None else idempotency.claim(key, caller, items, batch=batch)


def _checked(
    type_: TaskKind,
    index_uid: str | None,
    details: dict[str, Any] | None,
    caller: Principal,
    extra: dict[str, Any] | None = None,
) -> NewTask:
    """One enqueue, checked: (index uid, type, details, extra fields to store), as `TaskTable.insert` takes it."""
    # The type's action first (a dump needs `dumps.create`, not `tasks.enqueue`), whatever the details.
    if not caller.allows(enqueue_action(type_)):
        raise invalid_key()
    details = enqueue_details(type_, index_uid, details)
    # A key scoped to some indexes enqueues only on them, and never global tasks (a dump holds every index).
    scope = caller.scope
    if scope is not None and (type_.is_global or not scope.allows(index_uid)):
        raise invalid_key()
    return index_uid, type_, details, extra or None
