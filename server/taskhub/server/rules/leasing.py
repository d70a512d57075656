"""The scheduler's worker rules: leasing batches, renewals, reports and releases.

`Scheduler` inherits this mixin; it uses the scheduler's store thread (`_write`,
`call`), clock and limits. Batching and per-index order live in the lease store.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass

from taskhub.errors import TaskHubError
from taskhub.server.model import Scope, Task, TaskType
from taskhub.server.rules.details import outcome_details, outcome_error

SECOND = 1_000_000
# A lease lasts 1 second to 1 hour, whether leased or renewed; a lease call waits a minute at most.
MIN_LEASE, MAX_LEASE = SECOND, 3_600 * SECOND
MAX_WAIT = 60.0


def lease_length(duration: int) -> int:
    """The duration a lease or renewal gets for the one asked (microseconds, positive), held within bounds."""
    return min(max(duration, MIN_LEASE), MAX_LEASE)


@dataclass(slots=True)
class Lease:
    """A batch leased to a worker."""

    token: str
    deadline: int
    tasks: list[Task]


class Leasing:
    """Lease, renew, complete and release; mixed into `Scheduler`."""

    async def lease(
        self,
        *,
        worker: str,
        types: frozenset[TaskType] | None = None,
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
            changed = self._changed
            token, now = secrets.token_urlsafe(18), self.clock()
            changes = await self._write(
                self.store.lease_batch,
                token=token,
                worker=worker,
                types=types,
                index_uids=index_uids,
                scope=scope,
                max_tasks=size,
                now=now,
                duration=duration,
            )
            if changes.tasks:
                return Lease(token=token, deadline=now + duration, tasks=changes.tasks)
            remaining = give_up - loop.time()
            if remaining <= 0 or self.closing:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    async def renew(self, token: str, duration: int | None = None) -> int | None:
        """Extends a lease (by its own duration when None); answers the new deadline, or None when its batch
        was canceled."""
        return await self.call(
            self.store.renew_lease, token, self.clock(), None if duration is None else lease_length(duration)
        )

    async def complete(
        self, token: str, outcomes: dict[int, tuple[TaskType | None, dict | None, dict | None]]
    ) -> list[Task]:
        """Finishes a lease's tasks: `outcomes` maps uid -> (reported type, reported details, error)."""
        checked = {uid: ((type_, details), outcome_error(error)) for uid, (type_, details, error) in outcomes.items()}

        def merge(task: Task, reported: tuple) -> dict | None:
            return outcome_details(task, *reported)

        changes = await self._write(self.store.complete_lease, token, checked, self.clock(), merge)
        return changes.tasks

    async def release(self, token: str) -> int:
        """Gives a lease's tasks back to the queue; answers how many."""
        return len((await self._write(self.store.release_lease, token, self.clock())).tasks)
