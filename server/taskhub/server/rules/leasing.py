"""The worker rules: leasing batches, renewals, reports, releases, expiry and the attempts limit.

Each decision is one unit of work: the finder takes every commit first, then the
batch is chosen (`batching`) and written, so two servers on one database never
lease one task twice. A lease row lives on after its batch ends, with the reason in
`state`, so a late renewal or report is told precisely why its lease is gone.
A failed attempt (a retryable failure reported, a lease expired) counts in the task's
`attempts`; while its retry policy allows more, the task goes back to enqueued, after a
backoff for a reported failure (its `runAt`). A lease call waiting for work sleeps at
most until the earliest `runAt` of a waiting task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskhub.errors import TaskHubError
from taskhub.server.batch import ProgressStep
from taskhub.server.model import Scope, Task, TaskKind, TaskStatus, finished_details
from taskhub.server.rules import batching
from taskhub.server.rules.batches import batch_uid_of, check_progress, close_batch, lease_strategy, open_batch
from taskhub.server.rules.details import outcome_details, outcome_error
from taskhub.server.rules.retries import RetryPolicies, RetryPolicy
from taskhub.server.rules.units import Units
from taskhub.server.storage.contract import ACTIVE, LeaseRecord, Transaction

SECOND = 1_000_000
# A lease lasts 1 second to 1 hour, whether leased or renewed; a lease call waits a minute at most.
MIN_LEASE, MAX_LEASE = SECOND, 3_600 * SECOND
MAX_WAIT = 60.0
# The longest wait a worker may ask before a retry, as far ahead as a `runAt` may be.
MAX_RETRY_AFTER = 366 * 86_400 * SECOND
# A waiting lease wakes this long after the earliest runAt, in seconds: the clock it compares with may lag the loop's.
WAKE_SLACK = 0.001
# Why a lease ended, as told to a late renewal or report.
ENDED = {
    "completed": "its batch was already reported",
    "expired": "it expired before being renewed",
    "canceled": "its batch was canceled",
    "released": "it was released",
    "lost": "the server restarted",
}
log = logging.getLogger(__name__)
# The longest error message a log line quotes: a worker's message may be long.
LOGGED_MESSAGE = 300
# A task's outcome once checked: (reported type, reported details), and the error in Meilisearch's shape.
Checked = tuple[tuple[TaskKind | None, dict[str, Any] | None], dict[str, Any] | None]


def lease_length(duration: int) -> int:
    """The duration a lease or renewal gets for the one asked (microseconds, positive), held within bounds."""
    return min(max(duration, MIN_LEASE), MAX_LEASE)


@dataclass(slots=True)
class Lease:
    """A batch leased to a worker."""

    token: str
    deadline: int
    tasks: list[Task]
    batch_uid: int | None = None


class Leasing:
    """Lease, renew, complete, release and expire, over units of work."""

    def __init__(
        self,
        units: Units,
        clock: Callable[[], int],
        *,
        max_batch_size: int,
        max_attempts: int,
        closing: Callable[[], bool],
        policies: RetryPolicies | None = None,
    ) -> None:
        self.units = units
        self.clock = clock
        self.max_batch_size = max_batch_size
        self.policies = policies or RetryPolicies(RetryPolicy(attempts=max_attempts))
        self.closing = closing

    async def lease(
        self,
        *,
        worker: str,
        types: frozenset[TaskKind] | None = None,
        index_uids: frozenset[str] | None = None,
        scope: Scope | None = None,
        max_tasks: int | None = None,
        wait: float = 0.0,
        duration: int = 30 * SECOND,
    ) -> Lease | None:
        """Leases the oldest runnable batch, waiting up to `wait` seconds for one."""
        if types is not None and any(t.server_run for t in types):
            raise TaskHubError(
                "invalid_task_types",
                "Workers lease index tasks only; the server runs "
                + ", ".join(f"`{t.label}`" for t in sorted(t for t in types if t.server_run))
                + ".",
            )
        size = self.max_batch_size if not max_tasks else min(max_tasks, self.max_batch_size)
        duration = lease_length(duration)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + min(wait, MAX_WAIT)
        while True:
            changed = self.units.changed
            token, now = secrets.token_urlsafe(18), self.clock()
            batch = await self.units.run(
                self._lease,
                LeaseRecord(token, worker, now + duration, duration, ACTIVE),
                types,
                index_uids,
                scope,
                size,
            )
            if batch:
                return Lease(token=token, deadline=now + duration, tasks=batch, batch_uid=batch_uid_of(batch[0]))
            remaining = give_up - loop.time()
            if remaining <= 0 or self.closing():
                return None
            # The timer: a commit wakes the wait, and so does the earliest waiting task falling due.
            now = self.clock()
            next_due = self.units.finder.next_run_at(now)
            if next_due is not None:
                remaining = min(remaining, (next_due - now) / SECOND + WAKE_SLACK)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    def _lease(
        self,
        tx: Transaction,
        lease: LeaseRecord,
        types: frozenset[TaskKind] | None,
        index_uids: frozenset[str] | None,
        scope: Scope | None,
        size: int,
    ) -> list[Task]:
        self.units.sync(tx)
        batch = batching.next_batch(
            tx,
            self.units.finder,
            types=types,
            index_uids=index_uids,
            scope=scope,
            max_tasks=size,
            now=lease.deadline - lease.duration,
        )
        if not batch:
            return []
        started = lease.deadline - lease.duration
        for task in batch:
            task.status, task.started_at = TaskStatus.PROCESSING, started
        strategy = lease_strategy(tx, self.units.finder, batch, size, types)
        lease.batch_uid = open_batch(tx, batch, started, strategy, lease=lease.token, worker=lease.worker).uid
        tx.leases.insert(lease)
        self.units.note("lease_granted")
        return tx.tasks.save(batch, lease=lease.token)

    async def renew(
        self, token: str, duration: int | None = None, progress: list[ProgressStep] | None = None
    ) -> int | None:
        """Extends a lease (by its own duration when None) and records the worker's `progress` on its batch (None
        keeps the last); answers the new deadline, or None when its batch was canceled. A bad report is refused
        whole, the lease untouched."""
        if progress is not None:
            check_progress(progress)
        wanted = None if duration is None else lease_length(duration)
        return await self.units.run(self._renew, token, self.clock(), wanted, progress)

    def _renew(
        self, tx: Transaction, token: str, now: int, duration: int | None, progress: list[ProgressStep] | None
    ) -> int | None:
        lease = _current(tx, token, now)
        if lease is not None and lease.state == "canceled":
            return None
        if lease is None or lease.state != ACTIVE:
            raise _lost(token, lease)
        deadline = now + (duration or lease.duration)
        tx.leases.update(token, deadline=deadline)
        if progress is not None and lease.batch_uid is not None:
            tx.batches.set_progress(lease.batch_uid, progress)
        return deadline

    async def complete(
        self,
        token: str,
        outcomes: dict[int, tuple[TaskKind | None, dict[str, Any] | None, dict[str, Any] | None]],
        retries: dict[int, int | None] | None = None,
    ) -> list[Task]:
        """Finishes a lease's tasks: `outcomes` maps uid -> (reported type, reported details, error).

        `retries` maps the uids whose failure is retryable to the wait asked before the next attempt
        (microseconds; None: the retry policy's backoff).
        """
        checked = {uid: ((type_, details), outcome_error(error)) for uid, (type_, details, error) in outcomes.items()}
        for uid, after in (retries or {}).items():
            if checked.get(uid, (None, None))[1] is None:
                raise TaskHubError("invalid_task_outcome", f"Task `{uid}` is retryable but reports no error.")
            if after is not None and not 0 <= after <= MAX_RETRY_AFTER:
                raise TaskHubError(
                    "invalid_task_outcome",
                    f"The retry of task `{uid}` must come from 0 to {MAX_RETRY_AFTER // (86_400 * SECOND)} days later.",
                )
        tasks = await self.units.run(self._complete, token, checked, retries or {}, self.clock())
        for task in tasks:
            if task.uid in checked and checked[task.uid][1] is not None:
                _log_failure(task, retried=task.status == TaskStatus.ENQUEUED, retryable=task.uid in (retries or {}))
        return tasks

    def _complete(
        self, tx: Transaction, token: str, outcomes: dict[int, Checked], retries: dict[int, int | None], now: int
    ) -> list[Task]:
        """Every task of an active lease finishes with its outcome (or waits for its next attempt), or none does."""
        lease = _current(tx, token, now)
        if lease is None or lease.state != ACTIVE:
            raise _lost(token, lease)
        tasks = tx.leases.tasks_of(token)
        leased = {t.uid for t in tasks}
        stray = sorted(set(outcomes) - leased)
        if stray:
            raise TaskHubError("invalid_task_outcome", f"Task `{stray[0]}` is not part of lease `{token}`.")
        missing = sorted(leased - set(outcomes))
        if missing:
            raise TaskHubError("invalid_task_outcome", f"The outcome of task `{missing[0]}` is missing.")
        for task in tasks:
            reported, error = outcomes[task.uid]
            if task.uid in retries and error is not None:
                if self._retry(task, error, now, retries[task.uid]):
                    self.units.note("retry", task.type.label)
                    continue
                self.units.note("attempts_exhausted", "failed")
            details = outcome_details(task, *reported)
            if task.extra and "lastError" in task.extra:  # the outcome itself says what happened last
                task.extra = {k: v for k, v in task.extra.items() if k != "lastError"} or None
            task.status = TaskStatus.FAILED if error else TaskStatus.SUCCEEDED
            task.details = finished_details(task.type, details, success=error is None)
            task.error, task.finished_at = error, now
        tx.leases.update(token, state="completed")
        close_batch(tx, lease.batch_uid, now, "completed", tasks)
        return tx.tasks.save(tasks, lease=None)

    def _retry(self, task: Task, error: dict[str, Any], now: int, after: int | None) -> bool:
        """A retryable failure: the task waits enqueued for its next attempt, if its policy allows one.

        Answers False when its attempts are spent: it then fails with this error. The next attempt's
        time is the task's `runAt`, the one field a lease heeds (so a backing-off task waits as a delayed
        one does, holding no index); `lastError` keeps the error, `error` stays null until the end.
        """
        attempts = _attempts(task) + 1
        extra = {**(task.extra or {}), "attempts": attempts}
        policy = self._policy(task)
        if attempts >= policy.attempts:
            task.extra = extra
            return False
        extra["runAt"] = now + (policy.delay(attempts) if after is None else after)
        extra["lastError"] = error
        task.extra = extra
        task.status, task.started_at = TaskStatus.ENQUEUED, None
        return True

    def _policy(self, task: Task) -> RetryPolicy:
        override = task.extra.get("retry") if task.extra else None
        return self.policies.policy_of(task.type.label, override)

    async def release(self, token: str) -> int:
        """Gives a lease's tasks back to the queue; answers how many."""
        return len(await self.units.run(self._release, token, self.clock()))

    def _release(self, tx: Transaction, token: str, now: int) -> list[Task]:
        lease = _current(tx, token, now)
        if lease is None or lease.state != ACTIVE:
            raise _lost(token, lease)
        tx.leases.update(token, state="released")
        requeued = requeue(tx, tx.leases.tasks_of(token))
        close_batch(tx, lease.batch_uid, now, "released", requeued)
        return requeued

    async def expire(self, now: int) -> list[Task]:
        expired: list[tuple[str, list[Task]]] = []
        changed = await self.units.run_led(self._expire, now, expired)  # the leader's work
        for worker, tasks in expired:
            _log_expiry(worker, tasks)
        return changed

    def _expire(self, tx: Transaction, now: int, expired: list[tuple[str, list[Task]]]) -> list[Task]:
        """The tasks of expired leases go back to enqueued, or fail once out of attempts; `expired` gets each
        lease's worker and tasks, for the log once committed."""
        expired.clear()  # a unit tried again starts over
        changed = []
        for token in tx.leases.expired(now):
            record = tx.leases.get(token)
            tx.leases.update(token, state="expired")
            self.units.note("lease_expired")
            ended: list[Task] = []
            expired.append(("" if record is None else record.worker, ended))
            for task in tx.leases.tasks_of(token):
                ended.append(task)
                # An attempt spent; the lease's own length was the wait, so the task is due again at once.
                attempts = _attempts(task) + 1
                task.extra = {**(task.extra or {}), "attempts": attempts}
                if attempts < self._policy(task).attempts:
                    changed += requeue(tx, [task])
                    continue
                self.units.note("attempts_exhausted", "expired")
                task.status, task.finished_at = TaskStatus.FAILED, now
                task.details = finished_details(task.type, task.details, success=False)
                task.extra = {k: v for k, v in task.extra.items() if k != "lastError"}
                task.error = {
                    "message": "The task's lease expired without a report from a worker;"
                    f" after {attempts} attempts it will not be tried again.",
                    "code": "task_attempts_exhausted",
                    "type": "system",
                    "link": "https://docs.meilisearch.com/errors#task_attempts_exhausted",
                }
                changed += tx.tasks.save([task], lease=None)
            lease = tx.leases.get(token)
            close_batch(tx, None if lease is None else lease.batch_uid, now, "expired", ended)
        return changed


def _log_failure(task: Task, *, retried: bool, retryable: bool) -> None:
    """A reported failure: tried again later, failed for good, or failed with its attempts spent."""
    error = (task.extra or {}).get("lastError") if retried else task.error
    code = str((error or {}).get("code"))
    message = str((error or {}).get("message", ""))[:LOGGED_MESSAGE]
    fields = {"uid": task.uid, "type": task.type.label, "index_uid": task.index_uid, "code": code}
    attempt = _attempts(task) + (0 if retryable else 1)  # a retryable failure counted itself already
    if retried:
        run_at = (task.extra or {}).get("runAt")
        log.info(
            "task %d (%s) failed, attempt %d, tried again later: %s: %s",
            task.uid,
            task.type.label,
            attempt,
            code,
            message,
            extra={"event": "task_retrying", **fields, "attempt": attempt, "run_at": run_at},
        )
    elif retryable:
        log.info(
            "task %d (%s) failed for good on attempt %d, the last allowed: %s: %s",
            task.uid,
            task.type.label,
            attempt,
            code,
            message,
            extra={"event": "attempts_exhausted", **fields, "attempt": attempt},
        )
    else:
        log.info(
            "task %d (%s) failed: %s: %s",
            task.uid,
            task.type.label,
            code,
            message,
            extra={"event": "task_failed", **fields, "attempt": attempt},
        )


def _log_expiry(worker: str, tasks: list[Task]) -> None:
    """A lease expired: who held it, its tasks and their attempt, and those whose attempts it spent."""
    uids = [t.uid for t in tasks]
    attempts = {t.uid: _attempts(t) for t in tasks}
    log.info(
        "the lease of worker %s expired without a report: tasks %s, attempts %s",
        worker,
        uids,
        [attempts[u] for u in uids],
        extra={"event": "lease_expired", "worker": worker, "uids": uids, "attempts": [attempts[u] for u in uids]},
    )
    for task in tasks:
        if task.status == TaskStatus.FAILED:
            log.info(
                "task %d (%s) failed for good: its lease expired on attempt %d, the last allowed",
                task.uid,
                task.type.label,
                attempts[task.uid],
                extra={
                    "event": "attempts_exhausted",
                    "uid": task.uid,
                    "type": task.type.label,
                    "index_uid": task.index_uid,
                    "code": "task_attempts_exhausted",
                    "attempt": attempts[task.uid],
                    "worker": worker,
                },
            )


def requeue(tx: Transaction, tasks: list[Task]) -> list[Task]:
    """Tasks back to enqueued, held by no lease."""
    for task in tasks:
        task.status, task.started_at = TaskStatus.ENQUEUED, None
    return tx.tasks.save(tasks, lease=None)


def cancel_leases_of(tx: Transaction, canceled: list[Task], now: int) -> list[Task]:
    """Stops the batches holding canceled tasks: their leases end, their other tasks go back, their batches close."""
    requeued = []
    uids = [t.uid for t in canceled]
    for token in tx.leases.holding(uids):
        tx.leases.update(token, state="canceled")
        requeued += requeue(tx, tx.leases.tasks_of(token))
        lease = tx.leases.get(token)
        close_batch(tx, None if lease is None else lease.batch_uid, now, "canceled")
    tx.leases.release_tasks(uids)
    return requeued


def _attempts(task: Task) -> int:
    """How many attempts of the task failed so far."""
    return int(task.extra.get("attempts", 0)) if task.extra else 0


def _current(tx: Transaction, token: str, now: int) -> LeaseRecord | None:
    lease = tx.leases.get(token)
    if lease is not None and lease.state == ACTIVE and lease.deadline < now:
        lease.state = "expired"  # not yet swept by tick(), but already lost
    return lease


def _lost(token: str, lease: LeaseRecord | None) -> TaskHubError:
    if lease is None:
        return TaskHubError("lease_lost", f"Lease `{token}` is unknown.")
    return TaskHubError("lease_lost", f"Lease `{token}` was lost: {ENDED[lease.state]}.")
