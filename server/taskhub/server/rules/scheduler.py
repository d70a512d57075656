"""The scheduler: the queue's rules, between the services and the store.

Services call its coroutines (`enqueue`, `list_tasks`, `cancel_tasks`, ...);
`tick(now)` does one pass of server-side work (cancelations newest first, then
deletions, snapshots, dumps). Store calls run on one store thread, off the event
loop, a waiting group commit ahead of the other waiting writes; after each commit
the store's in-memory index follows (on that thread) and the changed tasks go to
the watch hub (on the loop), in commit order. Worker leases (`leasing`) and
watches (`watching`) are its two mixins. No protobuf here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from taskhub.errors import TaskHubError
from taskhub.server.model import SERVER_PRIORITY, Scope, Task, TaskQuery, TaskStatus, TaskType, format_time
from taskhub.server.rules import exports
from taskhub.server.rules.details import enqueue_details
from taskhub.server.rules.leasing import SECOND, Leasing
from taskhub.server.rules.store_thread import StoreThread
from taskhub.server.rules.watch import WatchHub
from taskhub.server.rules.watching import Watching
from taskhub.server.storage.sqlite.store import Changes, Store

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
MAX_LIMIT = 10_000
# The stored JSON a page of tasks may carry: PROTOBUF_GROWTH times it stays under gRPC's
# 64 MiB message limit (taskhub.limits.MIN_MESSAGE), and the gateway's JSON page under it.
PAGE_BYTES = 8 * 1024 * 1024
MAX_ENQUEUE_BATCH = 1_000
# Seconds an enqueue may wait for others to share its commit, when the queue is busy.
DEFAULT_COMMIT_WINDOW = 0.005


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


class Scheduler(Leasing, Watching):
    """Applies the queue rules over a `Store`, and feeds the `WatchHub` after commits."""

    def __init__(
        self,
        store: Store,
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
    ) -> None:
        self.store = store
        self.max_db_size = max_db_size
        self.cleanup_threshold = cleanup_threshold
        self.cleanup_batch = cleanup_batch
        self.watch_retention = watch_retention
        self.watch_retention_bytes = watch_retention_bytes
        self._pruned_at = 0
        self.max_batch_size = max_batch_size
        self.max_attempts = max_attempts
        self.hub = hub or WatchHub()
        self.clock = clock
        self.snapshots_dir = snapshots_dir
        self.dumps_dir = dumps_dir
        self._thread = StoreThread("taskhub-store")
        # Reads that may take a while (lists, replays) run on their own thread and
        # connection, so they never queue behind writes nor hold writes up.
        self._reads = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="taskhub-reads", initializer=self._open_reader
        )
        self._readers: list[Store] = []
        self._local = threading.local()
        # Point reads are a few microseconds: done on the event loop, on a connection of their own.
        self.reader = store.open_reader()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        # Replaced after every write: long-polling leases wait on the current one.
        self._changed = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self.closing = False
        # Enqueues waiting for the next group commit, and whether one is running or due.
        self._pending: list[tuple[list[tuple], asyncio.Future]] = []
        self._flushing = False
        # While fewer enqueues wait than shared the last commit: the timer that ends the wait for more.
        self.commit_window = commit_window
        self._gathering: asyncio.TimerHandle | None = None
        self._commit: asyncio.Future | None = None
        self._gather_target = 1

    # -- plumbing ---------------------------------------------------------

    def _open_reader(self) -> None:
        self._local.store = self.store.open_reader()
        self._readers.append(self._local.store)

    async def read(self, fn: Callable[[Store], object], *args):
        """Runs `fn(reader, *args)` on the read thread, with that thread's read-only connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, lambda: fn(self._local.store, *args))

    async def call(self, fn: Callable, *args, **kwargs):
        """Runs a store call on the store thread: reads, and writes that change no task (keys)."""
        return await asyncio.wrap_future(self._thread.submit(fn, *args, **kwargs))

    async def call_in_commit_order(self, fn: Callable, *args):
        """`call` in the group commits' lane: it sees every commit asked for before it, and none asked for after.

        For reads that must not be overtaken by a later commit, as `call` can be: a watch's
        starting cursor, read after it subscribed, must not count a commit it would miss.
        """
        return await asyncio.wrap_future(self._thread.submit_first(fn, *args))

    async def _write(self, fn: Callable[..., Changes | list[Task]], *args, **kwargs) -> Changes:
        """Runs a store write; its changes reach the hub right after the commit, in commit order."""
        return await self._write_on(self._thread.submit, fn, args, kwargs)

    async def _write_first(self, fn: Callable[..., Changes | list[Task]], *args, **kwargs) -> Changes:
        """`_write` ahead of the writes waiting for the store thread: for group commits, which producers wait on."""
        return await self._write_on(self._thread.submit_first, fn, args, kwargs)

    async def _write_on(self, submit: Callable, fn: Callable, args: tuple, kwargs: dict) -> Changes:
        loop = asyncio.get_running_loop()

        def run() -> Changes:
            changes = fn(*args, **kwargs)
            if isinstance(changes, list):
                changes = Changes(tasks=changes)
            if changes.tasks:
                loop.call_soon_threadsafe(self._committed, changes)
            return changes

        changes = await asyncio.wrap_future(submit(run), loop=loop)
        if changes.tasks or changes.deleted:
            if self._gives_work(changes):
                self._wake.set()
            self._changed.set()
            self._changed = asyncio.Event()
        return changes

    def _gives_work(self, changes: Changes) -> bool:
        """Whether a commit leaves `tick` something to do: a server-run task, or a queue due for cleanup.

        Lease expiry needs no wake: `_run` ticks every second anyway. Not waking on every
        enqueue spares a busy queue four store-thread round trips per group commit.
        """
        return (
            any(t.type.server_run and t.status == TaskStatus.ENQUEUED for t in changes.tasks)
            or len(self.store.index.all) >= self.cleanup_threshold
        )

    def _committed(self, changes: Changes) -> None:
        """On the loop, in commit order: the watchers learn of a commit (the store's index already has)."""
        self.hub.publish(changes.tasks, changes.deleted)

    async def start(self, *, background: bool = True) -> None:
        """Builds the store's index, recovers from the last stop, then (by default) runs `tick` when there is work."""
        await self.call(lambda: self.store.index)  # read from SQLite here, on the store thread
        await self._write(self.store.requeue_processing)
        if background:
            self._runner = asyncio.create_task(self._run(), name="taskhub-scheduler")

    def begin_shutdown(self) -> None:
        """Ends every watch with UNAVAILABLE and lets long-polling leases answer at once."""
        self.closing = True
        self.hub.end_all(TaskHubError("unavailable", "The server is shutting down; reconnect and resume."))
        self._changed.set()

    async def stop(self) -> None:
        self.closing = True
        await self._drain_commits()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        self._thread.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        for reader in (self.reader, *self._readers):
            reader.conn.close()

    async def _drain_commits(self) -> None:
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
            except Exception:  # keep the loop alive; the task stays enqueued and is retried
                log.exception("scheduler tick failed")
                await asyncio.sleep(1.0)

    # -- reads ------------------------------------------------------------

    async def get_task(self, uid: int, *, scope: Scope | None = None) -> Task:
        task = self.reader.get_task(uid)
        if task is None or not _visible(task, scope):
            raise TaskHubError("task_not_found", f"Task `{uid}` not found.")
        return task

    async def list_tasks(
        self, query: TaskQuery, *, limit: int | None = None, from_uid: int | None = None, reverse: bool = False
    ) -> Page:
        limit = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)

        # The index answers which uids and how many; the rows come from the store by uid.
        with self.store.index_lock:  # the store thread changes the index after each commit
            uids, total = self.store.index.page(query, limit=limit, from_uid=from_uid, reverse=reverse)
        # A normal page is read on the loop; a big one on the read thread, not to stall the loop.
        # Bounded in bytes too: a page cut short for size goes on (`next`) at the first task left out.
        rows, cut = (
            self.reader.get_page(uids, PAGE_BYTES)
            if len(uids) <= 200
            else await self.read(Store.get_page, uids, PAGE_BYTES)
        )
        results, extra = rows[:limit], rows[limit:]
        next_uid = cut if cut is not None else (extra[0].uid if extra else None)
        return Page(
            results=results, total=total, limit=limit, from_uid=results[0].uid if results else None, next_uid=next_uid
        )

    # -- writes -----------------------------------------------------------

    async def enqueue(
        self, type_: TaskType, index_uid: str | None, details: dict | None, *, scope: Scope | None = None
    ) -> Task:
        return (await self._group_commit([_checked(type_, index_uid, details, scope)]))[0]

    async def enqueue_many(
        self, items: list[tuple[TaskType, str | None, dict | None]], *, scope: Scope | None = None
    ) -> list[Task]:
        """Enqueues tasks of (type, index uid, details), all in the same transaction, with consecutive uids.

        Every item is checked before any is stored: one bad item refuses them all, its
        position at the head of the message.
        """
        if not 1 <= len(items) <= MAX_ENQUEUE_BATCH:
            raise TaskHubError(
                "invalid_task_batch",
                f"Give from 1 to {MAX_ENQUEUE_BATCH:,} tasks to enqueue at once, not {len(items):,}.",
            )
        checked = []
        for position, (type_, index_uid, details) in enumerate(items):
            try:
                checked.append(_checked(type_, index_uid, details, scope))
            except TaskHubError as error:
                raise error.within(f"tasks[{position}]") from None
        return await self._group_commit(checked)

    async def _group_commit(self, items: list[tuple]) -> list[Task]:
        """Stores checked items in the next group commit, side by side; answers their tasks once durable."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append((items, done))
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
        # A full queue refuses new work; cancelations and deletions, which free it, still go through.
        job = self._commit = asyncio.ensure_future(
            self._write_first(self._insert_making_room, [item for items, _ in batch for item in items], self.clock())
        )

        def settle(job: asyncio.Future) -> None:
            self._commit = None
            error = None if job.cancelled() else job.exception()
            start = 0
            for items, done in batch:
                end = start + len(items)
                if done.done():
                    pass
                elif job.cancelled():
                    done.cancel()
                elif error is not None:
                    done.set_exception(error)
                else:
                    done.set_result(job.result().tasks[start:end])
                start = end
            self._next_batch()

        job.add_done_callback(settle)

    def _insert_making_room(self, items: list[tuple], now: int) -> Changes:
        """On the store thread: a group commit; when the queue is full, the change log is pruned and it is tried again.

        The prune is a transaction of its own, so what it frees stays free even if the queue is still full.
        """
        try:
            return self.store.insert_tasks(items, now, max_bytes=self.max_db_size)
        except TaskHubError as error:
            if error.code != "no_space_left_on_device" or not self.store.prune_changes(
                self.watch_retention, self.watch_retention_bytes
            ):
                raise
        return self.store.insert_tasks(items, now, max_bytes=self.max_db_size)

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

        def details(matched: int) -> dict:
            return {"matchedTasks": matched, counter: None, "originalFilter": original}

        changes = await self._write(self.store.insert_matching_task, type_, query, details, self.clock())
        return changes.tasks[0]

    # -- server-side work -------------------------------------------------

    async def tick(self, now: int | None = None) -> int:
        """One pass: expire leases, then run server tasks in priority order; answers how many it ran."""
        moment = self.clock() if now is None else now
        await self._write(self.store.expire_leases, moment, self.max_attempts)
        if moment - self._pruned_at >= 10 * SECOND:
            self._pruned_at = moment
            await self.call(self.store.prune_changes, self.watch_retention, self.watch_retention_bytes)
        ran = 0
        while True:
            task = await self.call(self.store.next_server_task)
            if task is None and not await self._clean_up():
                return ran
            if task is not None:
                await self._run_server_task(task, self.clock() if now is None else now)
                ran += 1

    async def _clean_up(self) -> bool:
        """At `cleanup_threshold` tasks, enqueues a deletion of the oldest finished ones; answers if it did."""
        if await self.call(self.store.task_count) < self.cleanup_threshold:
            return False
        oldest = await self.call(self.store.oldest_finished, self.cleanup_batch)
        # At least two, or the queue would only ever delete the previous cleanup's own task.
        if len(oldest) < 2:
            return False
        newest_enqueued_at = oldest[-1][1]
        original = "?" + urllib.parse.urlencode(
            {"beforeEnqueuedAt": format_time(newest_enqueued_at + 1), "statuses": "succeeded,failed,canceled"}
        )
        log.info(
            "the queue holds %d tasks or more: deleting the %d oldest finished ones",
            self.cleanup_threshold,
            len(oldest),
        )
        await self.delete_tasks(TaskQuery(uids=frozenset(uid for uid, _ in oldest)), original)
        return True

    async def _run_server_task(self, task: Task, now: int) -> None:
        assert task.type in SERVER_PRIORITY
        await self._write(self.store.start_task, task.uid, now)
        if task.type == TaskType.TASK_CANCELATION:
            await self._write(self.store.run_cancelation, task.uid, now)
        elif task.type == TaskType.TASK_DELETION:
            await self._write(self.store.run_deletion, task.uid, now)
        else:
            await self._run_export(task, now)

    async def _run_export(self, task: Task, now: int) -> None:
        """Snapshots and dumps: the file is written first, the task finishes after."""
        try:
            if task.type == TaskType.SNAPSHOT_CREATION:
                await self.call(exports.write_snapshot, self.store, self.snapshots_dir, now)
                details = None
            else:
                dump_uid = await self.call(exports.write_dump, self.store, self.dumps_dir, now)
                details = {"dumpUid": dump_uid}
            await self._write(self.store.finish_task, task.uid, self.clock(), details=details)
        except OSError as exc:
            log.exception("%s %d failed", task.type.label, task.uid)
            error = {
                "message": f"Could not write the {task.type.label} file: {exc.strerror or exc}.",
                "code": "io_error",
                "type": "system",
                "link": "https://docs.meilisearch.com/errors#io_error",
            }
            await self._write(self.store.finish_task, task.uid, self.clock(), details=task.details, error=error)


def _checked(type_: TaskType, index_uid: str | None, details: dict | None, scope: Scope | None) -> tuple:
    """One enqueue, checked: (index uid, type, details to store), as `Store.insert_tasks` takes it."""
    details = enqueue_details(type_, index_uid, details)
    # A key scoped to some indexes enqueues only on them, and never global tasks.
    if scope is not None and (type_.is_global or not scope.allows(index_uid)):
        raise TaskHubError("invalid_api_key", "The provided API key is invalid.")
    return index_uid, type_, details


def _visible(task: Task, scope: Scope | None) -> bool:
    return scope is None or scope.allows(task.index_uid)
