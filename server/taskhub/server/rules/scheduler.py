"""The scheduler: the queue's rules, between the services and the storage contract.

Services call its coroutines (`enqueue`, `list_tasks`, `cancel_tasks`, `lease`, ...);
`tick(now)` does one pass of server-side work (lease expiry, then cancelations newest
first, deletions, snapshots, dumps, the automatic cleanup). It is assembled from parts
that each own one set of rules: `Enqueuing` (group commits, queue full, idempotency keys), `Requeuing`, `Leasing`
(batches, per-index order, attempts), `ServerTasks` (cancel, delete, exports, cleanup)
and `Watching`, over `Units` (units of work, and the follower that feeds the finder and
the watch hub after each commit). Several servers (replicas) may share a database: the
server-side work is then the leader's (`Replica`, rules/leadership.py), and `tick` does
nothing on the others. No protobuf and no SQL here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from taskhub.errors import TaskHubError
from taskhub.server.batch import Batch
from taskhub.server.model import CustomType, Scope, Task, TaskQuery, TaskStatus
from taskhub.server.rules import batches, idempotency, server_tasks
from taskhub.server.rules.enqueue import DEFAULT_COMMIT_WINDOW, Enqueuing
from taskhub.server.rules.leadership import RENEW_EVERY, NotLeading, Replica
from taskhub.server.rules.leasing import SECOND, Leasing
from taskhub.server.rules.requeue import Requeuing
from taskhub.server.rules.retries import RetryPolicies, RetryPolicy
from taskhub.server.rules.server_tasks import ServerTasks
from taskhub.server.rules.units import Units
from taskhub.server.rules.watch import WatchHub
from taskhub.server.rules.watching import Watching
from taskhub.server.storage.contract import Changes, Reader, Storage, StorageUnavailable, TaskFinder, Transaction
from taskhub.server.task_types import TaskTypes

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
MAX_LIMIT = 10_000
# The stored JSON a page of tasks may carry: PROTOBUF_GROWTH times it stays under gRPC's
# 64 MiB message limit (taskhub.limits.MIN_MESSAGE), and the gateway's JSON page under it.
PAGE_BYTES = 8 * 1024 * 1024
# A page this long or shorter is read on the loop; a longer one on the read thread.
LOOP_PAGE = 200
PROCESSING = frozenset({TaskStatus.PROCESSING})
# The finder's state is saved (for a fast next start) at most this often, once this many changes came since.
CHECKPOINT_EVERY = 60 * SECOND
CHECKPOINT_CHANGES = 10_000


def wall_clock() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1_000


@dataclass(slots=True)
class Page:
    """One page of a task listing."""

    results: list[Task]
    total: int
    limit: int
    from_uid: int | None
    next_uid: int | None


class Scheduler:
    """Applies the queue rules over a `Storage`, answers lists from a `TaskFinder`, and feeds the `WatchHub`."""

    def __init__(
        self,
        storage: Storage,
        finder: TaskFinder,
        *,
        hub: WatchHub | None = None,
        clock: Callable[[], int] = wall_clock,
        snapshots_dir: str = "snapshots",
        dumps_dir: str = "dumps",
        max_batch_size: int = 100,
        max_attempts: int = 5,
        watch_retention: int = 100_000,
        watch_retention_bytes: int | None = None,
        max_db_size: int | None = None,
        cleanup_threshold: int = 1_000_000,
        cleanup_batch: int = 100_000,
        commit_window: float = DEFAULT_COMMIT_WINDOW,
        checkpoint_every: int = CHECKPOINT_EVERY,
        checkpoint_changes: int = CHECKPOINT_CHANGES,
        types: TaskTypes | None = None,
        idempotency_ttl: int = idempotency.DEFAULT_TTL,
        max_idempotency_keys: int = idempotency.DEFAULT_MAX_KEYS,
        retry_policies: RetryPolicies | None = None,
        replica: Replica | None = None,
        readers: int = 1,
    ) -> None:
        self.storage = storage
        # This server among those on the database; alone on it unless told otherwise.
        self.replica = replica or Replica("taskhub", shared=False)
        # The task types callers name: Meilisearch's and those registered (`--task-types`).
        self.types = types or TaskTypes()
        self.finder = finder
        self.hub = hub or WatchHub()
        self.clock = clock
        self.closing = False
        self.watch_retention = watch_retention
        self.watch_retention_bytes = watch_retention_bytes
        self._pruned_at = 0
        self.units = Units(storage, finder, self.hub, self.replica, readers=readers)
        self.units.on_commit = self._committed
        # Every type's retry policy; its attempts are `max_attempts` unless `retry_policies` says otherwise.
        self.retry_policies = retry_policies or RetryPolicies(RetryPolicy(attempts=max_attempts))
        self.enqueuing = Enqueuing(
            self.units,
            clock,
            max_db_size=max_db_size,
            watch_retention=watch_retention,
            watch_retention_bytes=watch_retention_bytes,
            commit_window=commit_window,
            policies=self.retry_policies,
            idempotency_ttl=idempotency_ttl,
        )
        self.idempotency_ttl = idempotency_ttl
        self.requeuing = Requeuing(self.units, clock, max_db_size=max_db_size, types=self.types)
        self.max_idempotency_keys = max_idempotency_keys
        self.leasing = Leasing(
            self.units,
            clock,
            max_batch_size=max_batch_size,
            max_attempts=max_attempts,
            closing=lambda: self.closing,
            policies=self.retry_policies,
        )
        self.server_tasks = ServerTasks(
            self.units,
            clock,
            snapshots_dir=snapshots_dir,
            dumps_dir=dumps_dir,
            cleanup_threshold=cleanup_threshold,
            cleanup_batch=cleanup_batch,
        )
        self.watching = Watching(self.units, self.hub, self.get_task)
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        self._checkpointed_at = 0  # not read off the clock here: a test clock would move
        self.checkpoint_every = checkpoint_every
        self.checkpoint_changes = checkpoint_changes

        # The parts' public calls, as the services and tests know them.
        self.enqueue = self.enqueuing.enqueue
        self.enqueue_many = self.enqueuing.enqueue_many
        self.cancel_tasks = self.server_tasks.cancel_tasks
        self.delete_tasks = self.server_tasks.delete_tasks
        self.requeue_tasks = self.requeuing.requeue_tasks
        self.lease = self.leasing.lease
        self.renew = self.leasing.renew
        self.complete = self.leasing.complete
        self.release = self.leasing.release
        self.watch_task = self.watching.watch_task
        self.watch_tasks = self.watching.watch_tasks
        self.call = self.units.call
        self.read = self.units.read

    @property
    def reader(self) -> Reader:
        """The loop's read-only view (point reads)."""
        return self.units.reader

    def _committed(self, changes: Changes) -> None:
        """On the loop, after the hub: wakes `tick` when a commit enqueued a server-run task.

        Lease expiry and the automatic cleanup need no wake: `_run` ticks every second anyway,
        and checks them then. Not waking on every enqueue, nor reading the task count after each
        commit, spares a busy queue work per group commit.
        """
        wake = False
        known = self.types.of
        for task in changes.tasks:
            kind = task.type
            if kind.server_run:
                wake = wake or task.status == TaskStatus.ENQUEUED
            elif type(kind) is CustomType and kind not in known:
                self.types.learn(kind)  # registered by another replica since this one started
        if wake:
            self._wake.set()

    def _task_count(self) -> int:
        """How many tasks are stored: a counter read, not a count over the finder."""
        return self.units.reader.tasks.count()

    async def start(self, *, background: bool = True) -> None:
        """Fills the finder, recovers from the last stop, then (by default) runs `tick` when there is work."""
        await self.units.load()
        if not self.replica.shared:
            # The one server of its database: no lease is held through another, and none outlives it.
            # With replicas a worker's lease may be held through any of them: leases end by expiry only.
            processing = self.finder.uids(TaskQuery(statuses=PROCESSING), limit=2**32)
            await self.units.run(server_tasks.requeue_processing, processing, self.clock)
        await self.renew_lead()
        if background:
            self._runner = asyncio.create_task(self._run(), name="taskhub-scheduler")
            self._poller = asyncio.create_task(self.units.poll(lambda: self.closing), name="taskhub-follower")
            if self.replica.shared:
                self._renewer = asyncio.create_task(self._renew_always(), name="taskhub-leader")

    async def renew_lead(self) -> None:
        """One renewal: this replica reports its position, and renews its lead or takes a lapsed one."""
        term = await self.units.run(self._renew_lead, first=True)
        self.replica.became(term)

    def _renew_lead(self, tx: Transaction) -> int:
        # The lead's deadlines are compared between processes: always the wall clock, whatever `clock` is.
        term = self.replica.renew(tx, wall_clock(), self.units.follower.seq)
        if term and term != self.replica.term and self.replica.shared:
            # Taken over: the server-run tasks a former leader left processing go back, in the same unit.
            self.units.sync(tx)
            server_tasks.recover(tx, self.finder, self.clock)
        return term

    async def _renew_always(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                await self.renew_lead()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next renewal tries again; the term fences meanwhile
                log.warning("could not renew this replica's lead or position: %s", exc)

    def begin_shutdown(self) -> None:
        """Ends every watch with UNAVAILABLE and lets long-polling leases answer at once."""
        self.closing = True
        self.hub.end_all(TaskHubError("unavailable", "The server is shutting down; reconnect and resume."))
        self.units.changed.set()

    async def stop(self) -> None:
        self.closing = True
        await self.enqueuing.drain()
        for task in (self._runner, self._poller, self._renewer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = self._poller = self._renewer = None
        if self.replica.shared:
            try:  # another replica takes the lead at its next renewal, not after the deadline
                await self.units.run(self.replica.resign)
                self.replica.became(0, resigned=True)
            except Exception as exc:
                log.warning("could not hand over the lead: %s", exc)
        try:
            if self._checkpointing is not None:
                await asyncio.wait([self._checkpointing])
            # The next start reads the finder's state back instead of every task.
            await self._checkpoint()
        finally:
            self.units.shutdown()
            self.finder.close()

    async def _checkpoint(self) -> None:
        try:
            await self.units.checkpoint()
        except Exception:  # a save that fails costs the next start time, never this stop
            log.exception("could not save the index; the next start reads every task")

    def _checkpoint_due(self, moment: int) -> None:
        """Saves the finder's state in the background when enough changes came since the last save."""
        if (
            self._checkpointing is None
            and moment - self._checkpointed_at >= self.checkpoint_every
            and self.units.unsaved >= self.checkpoint_changes
        ):
            self._checkpointed_at = moment
            self._checkpointing = asyncio.create_task(self._checkpoint(), name="taskhub-checkpoint")
            self._checkpointing.add_done_callback(lambda _: setattr(self, "_checkpointing", None))

    async def _prune(self, moment: int) -> None:
        """Drops the oldest changes past the retention, keeping those the finder's saved state lacks.

        A start after a crash catches up from the log, from the saved state's sequence number; if
        those changes were gone it would read every task. So when pruning would drop some, the state
        is saved first (at most every `checkpoint_every`); until then they stay, within the byte budget.
        """
        if self.units.unsaved > self.watch_retention:
            if self._checkpointing is not None:
                await asyncio.wait([self._checkpointing])
            if moment - self._checkpointed_at >= self.checkpoint_every:
                self._checkpointed_at = moment
                await self._checkpoint()
        if self.replica.shared:
            await self.renew_lead()  # this replica's own position now, and the slowest one's
        # Never what a live replica has not followed yet (unless the byte budget needs it: that one then reads
        # every task again); `check`: the leader's work, fenced by its term.
        await self.units.call(
            lambda: self.storage.log.prune_changes(
                max(self.watch_retention, self.units.unsaved),
                self.watch_retention_bytes,
                keep_after=self.replica.slowest,
                check=self.replica.check,
            )
        )

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation and hang stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.tick(self.clock())
            except asyncio.CancelledError:
                raise
            except StorageUnavailable:  # the database is away (health says so): the next tick tries again
                await asyncio.sleep(1.0)
            except Exception:  # keep the loop alive; the task stays enqueued and is retried
                log.exception("scheduler tick failed")
                await asyncio.sleep(1.0)

    # -- reads ------------------------------------------------------------

    async def get_task(self, uid: int, *, scope: Scope | None = None) -> Task:
        task = self.units.reader.tasks.get(uid)
        if task is None or not (scope is None or scope.allows(task.index_uid)):
            raise TaskHubError("task_not_found", f"Task `{uid}` not found.")
        return task

    async def list_tasks(
        self, query: TaskQuery, *, limit: int | None = None, from_uid: int | None = None, reverse: bool = False
    ) -> Page:
        limit = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
        if self.replica.shared and self.units.reader.log.last_seq() > self.units.follower.seq:
            # Another replica committed since the follower last looked (its notification may be on its way):
            # the page and its total include every commit made before this call.
            await self.units.catch_up()
        if query.batch_uids is not None:  # the batches' member tasks, read by batch uid
            query = batches.resolve_query(self.units.reader, query)
        # The finder answers which uids and how many; the rows come from storage by uid.
        if self.finder.in_memory:
            uids, total = self.finder.page(query, limit=limit, from_uid=from_uid, reverse=reverse)
        else:  # a scan: off the loop
            uids, total = await self.units.read(
                lambda _: self.finder.page(query, limit=limit, from_uid=from_uid, reverse=reverse)
            )
        # Bounded in bytes too: a page cut short for size goes on (`next`) at the first task left out.
        if len(uids) <= LOOP_PAGE:
            rows, cut = self.units.reader.tasks.get_page(uids, PAGE_BYTES)
        else:
            rows, cut = await self.units.read(lambda reader: reader.tasks.get_page(uids, PAGE_BYTES))
        results, extra = rows[:limit], rows[limit:]
        next_uid = cut if cut is not None else (extra[0].uid if extra else None)
        return Page(
            results=results, total=total, limit=limit, from_uid=results[0].uid if results else None, next_uid=next_uid
        )

    async def list_batches(
        self, query: TaskQuery, *, limit: int | None = None, from_uid: int | None = None, reverse: bool = False
    ) -> batches.BatchPage:
        """Batches holding a task that matches each set field of `query`, newest first unless `reverse`."""
        limit = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
        return await self.units.read(batches.list_batches, query, limit, from_uid, reverse, PAGE_BYTES)

    async def get_batch(self, uid: int, *, scope: Scope | None = None) -> Batch:
        return batches.get_batch(self.units.reader, uid, scope)

    # -- server-side work -------------------------------------------------

    async def tick(self, now: int | None = None) -> int:
        """One pass: expire leases, then run server tasks in priority order; answers how many it ran.

        The leader's alone: on another replica it does nothing, and it stops where the lead was lost.
        """
        if not self.replica.leads:
            return 0
        try:
            return await self._tick(now)
        except NotLeading as lost:
            log.info("the server-run work stops here: %s", lost)
            self.replica.became(0)  # the row says so; the next renewal may take a lapsed lead again
            return 0

    async def _tick(self, now: int | None) -> int:
        moment = self.clock() if now is None else now
        await self.leasing.expire(moment)
        self._checkpoint_due(moment)
        if moment - self._pruned_at >= 10 * SECOND:
            self._pruned_at = moment
            await self._prune(moment)
            await self.units.run_led(idempotency.prune, moment, self.idempotency_ttl, self.max_idempotency_keys)
        ran = 0
        while True:
            task = await self.server_tasks.next()
            if task is None and not await self.server_tasks.clean_up(self._task_count()):
                return ran
            if task is not None:
                await self.server_tasks.run(task, self.clock() if now is None else now)
                ran += 1
