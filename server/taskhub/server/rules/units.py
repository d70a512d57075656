"""Units of work off the event loop, and what follows each commit.

Every write is one unit of work (`run`) on the store thread. Right after it commits,
on that thread, the follower takes its changes (reading first any other process's
commits it missed) into the finder; then, on the loop and in sequence order, the
watch hub publishes them and waiting lease calls wake. `catch_up` does the same for
commits made elsewhere (other replicas), which `poll` takes when the storage says some were
made (`Storage.follow_commits`), and looks for a few times a second in case it did not.
Reads run on a read thread with its own connection, or on the loop for point reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from taskhub.errors import TaskHubError
from taskhub.server.index.follower import Follower, HistoryLost
from taskhub.server.rules.leadership import Replica
from taskhub.server.rules.meter import Meter
from taskhub.server.rules.store_thread import StoreThread
from taskhub.server.rules.watch import WatchHub
from taskhub.server.storage.contract import (
    Changes,
    Reader,
    Storage,
    StorageFull,
    StorageUnavailable,
    TaskFinder,
    Transaction,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
DISK_FULL = (
    "taskhub cannot receive write operations because the limit of the task database has been reached."
    " Please delete tasks to continue performing write operations."
)
# How often another process's commits are looked for, in seconds.
POLL_INTERVAL = 0.2


class Units:
    """The store thread, the readers, and the follower that keeps the finder and the hub in step."""

    def __init__(
        self, storage: Storage, finder: TaskFinder, hub: WatchHub, replica: Replica | None = None, *, readers: int = 1
    ) -> None:
        self.storage = storage
        self.finder = finder
        self.hub = hub
        # This server among the replicas on the database: the leader's units of work check its term (`run_led`).
        self.replica = replica or Replica("taskhub", shared=False)
        self.follower = Follower(finder, 0)
        self._thread = StoreThread("taskhub-store")
        # Reads that may take a while (lists, replays) run on their own threads and
        # connections (`readers` of them), so they never queue behind writes nor hold writes up.
        self._local = threading.local()
        self._readers: list[Reader] = []
        self._reads = concurrent.futures.ThreadPoolExecutor(readers, thread_name_prefix="taskhub-reads")
        # Point reads are a few microseconds: done on the loop, on a connection of their own.
        self.reader = storage.reader()
        self._follow_reader: Reader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Replaced after every commit: long-polling leases wait on the current one.
        self.changed = asyncio.Event()
        # The sequence number of the finder's last saved state, and whether it saves any.
        self.checkpointed = 0
        self.keeps_state = True
        # Told of every commit's changes on the loop, after the hub (the scheduler's wake-up).
        self.on_commit: Callable[[Changes], None] = lambda changes: None
        # Set when the storage says another commit was made: the poll looks at once.
        self._committed_elsewhere = asyncio.Event()
        # Told of units of work, the changes followed and the events noted (the metrics; nothing by default).
        self.meter = Meter()
        # The events the unit of work running now noted: the meter hears of them once it commits.
        self._notes: list[tuple[str, str, int]] = []
        # What the unit of work running now asked to do once it commits (`after_commit`): counts, logs.
        self._after: list[Callable[[], None]] = []
        # Called in every unit of work on the store thread, before it commits (the webhooks' outbox).
        self.before_commit: Callable[[Transaction], None] = lambda tx: None

    def _thread_reader(self) -> Reader:
        """The read thread's own reader, opened on its first read (not as the thread starts: a database away then
        would break the thread pool for good; here it fails that one read)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self.storage.reader()
            self._readers.append(reader)
        return reader

    def _on_thread_reader(self) -> Reader:
        """The store thread's own reader, for the follower (opened there, on first use)."""
        if self._follow_reader is None:
            self._follow_reader = self.storage.reader(scan=True)
        return self._follow_reader

    async def load(self) -> None:
        """Fills the finder (from its saved state, or the stored tasks), then the changes since; the follower
        stands after them."""
        self._loop = asyncio.get_running_loop()
        # Where the state the finder started from stands: the changes after it are what a start after a
        # crash would need from the log, until the next save.
        self.checkpointed = await self.call(self._load)

    def _load(self) -> int:
        reader = self._on_thread_reader()
        start = self.follower.seq = self.finder.reload(reader)
        try:
            self.follower.catch_up(reader)
        except HistoryLost as lost:
            log.warning("the saved index is too old (%s): reading every task", lost)
            start = self.follower.seq = self.finder.reload(reader, fresh=True)
        self.meter.started(reader.tasks.next_uid())
        return start

    async def checkpoint(self) -> None:
        """Saves the finder's state as of the changes followed, so the next start begins there."""
        await asyncio.to_thread(self.finder.prepare_checkpoint)
        seq, save = await self.call(self._checkpoint)
        if save is None:
            self.keeps_state = False  # nothing saved, nothing a start could lack
        else:
            await asyncio.to_thread(save)
        self.checkpointed = seq

    @property
    def pending(self) -> int:
        """Jobs waiting for the store thread."""
        return self._thread.pending

    @property
    def unsaved(self) -> int:
        """How many changes the finder's saved state lacks (none when it saves nothing)."""
        return self.follower.seq - self.checkpointed if self.keeps_state else 0

    def _checkpoint(self) -> tuple[int, Callable[[], None] | None]:
        seq = self.follower.seq
        return seq, self.finder.checkpoint(seq, self._on_thread_reader().log.epoch())

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn(reader, *args)` on the read thread, with that thread's read-only connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, lambda: fn(self._thread_reader(), *args))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn(*args)` on the store thread, outside any unit of work."""
        return await asyncio.wrap_future(self._thread.submit(fn, *args))

    async def call_in_commit_order(self, fn: Callable[..., T], *args: Any) -> T:
        """`call` in the group commits' lane: it sees every commit asked for before it, and none asked for after."""
        return await asyncio.wrap_future(self._thread.submit_first(fn, *args))

    async def run(
        self, fn: Callable[..., T], *args: Any, first: bool = False, make_room: Callable[[], bool] | None = None
    ) -> T:
        """`fn(tx, *args)` in one unit of work on the store thread; answers what `fn` answers.

        `first`: ahead of the writes waiting (group commits, which producers wait on).
        `make_room`: when the database is full, called once (on the store thread); if it
        answers True the unit of work is tried once more.
        """
        loop = asyncio.get_running_loop()

        def work() -> T:
            try:
                return self._unit(loop, fn, args)
            except TaskHubError as error:
                if error.code != "no_space_left_on_device" or make_room is None or not make_room():
                    raise
            return self._unit(loop, fn, args)

        submit = self._thread.submit_first if first else self._thread.submit
        return await asyncio.wrap_future(submit(work), loop=loop)

    async def run_led(self, fn: Callable[..., T], *args: Any, first: bool = False) -> T:
        """`run` for the leader's work: the unit of work first checks this replica still leads in its term,
        and raises NotLeading (having done nothing) when it does not."""
        return await self.run(self.replica.fenced(fn), *args, first=first)

    def _unit(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """On the store thread: one unit of work, then the follower takes its changes."""
        self._notes = []
        self._after = []
        began = time.perf_counter()
        try:
            with self.storage.transaction() as tx:
                result = fn(tx, *args)
                self.before_commit(tx)
                changes = tx.changes
        except StorageFull as full:
            raise TaskHubError("no_space_left_on_device", DISK_FULL) from full
        self.meter.unit(getattr(fn, "__name__", "unit"), time.perf_counter() - began)
        if self._notes:
            self.meter.noted(self._notes)
        for action in self._after:
            action()
        own = (changes.tasks[0].seq, changes.tasks[-1].seq) if changes.tasks else None
        self._follow(loop, lambda reader: self.follower.take(changes, reader), own)
        return result

    def note(self, event: str, label: str = "", count: int = 1) -> None:
        """On the store thread, in a unit of work: something happened that the meter counts if the unit commits."""
        self._notes.append((event, label, count))

    def after_commit(self, action: Callable[[], None]) -> None:
        """On the store thread, in a unit of work: `action` runs once the unit commits (never if it does not, and
        once however many times the unit was tried)."""
        self._after.append(action)

    async def catch_up(self) -> None:
        """Takes the commits made elsewhere since the last one followed."""
        loop = asyncio.get_running_loop()
        await self.call(self._follow, loop, self.follower.catch_up)

    def sync(self, tx: Transaction) -> None:
        """On the store thread, in a unit of work: the finder takes every commit made before it."""
        assert self._loop is not None, "load() first"
        if tx.log.last_seq() > self.follower.seq:  # one point read on the unit's own connection
            self._follow(self._loop, self.follower.catch_up)

    def _follow(
        self,
        loop: asyncio.AbstractEventLoop,
        step: Callable[[Reader], list[Changes]],
        own: tuple[int, int] | None = None,
    ) -> None:
        """On the store thread: one follower step; its changes go to the meter, then to the hub on the loop,
        in order. `own`: the sequence numbers of this process's commit the step takes."""
        reader = self._on_thread_reader()
        try:
            new = step(reader)
        except HistoryLost as lost:
            # Only when another process pruned the log past what this one followed.
            log.warning("%s: reading every task again; watches end and resume", lost)
            self.follower.seq = self.finder.reload(reader, fresh=True)
            self.follower.catch_up(reader)
            self.meter.started(reader.tasks.next_uid())
            loop.call_soon_threadsafe(self._publish, [])  # wakes waiting leases: the finder changed
            loop.call_soon_threadsafe(
                self.hub.end_all, TaskHubError("unavailable", "Changes were missed; reconnect and resume.")
            )
            return
        for changes in new:
            self.meter.followed(changes, own)
        if new:
            loop.call_soon_threadsafe(self._publish, new)

    def _publish(self, new: list[Changes]) -> None:
        """On the loop, in sequence order: the hub, the scheduler's wake-up, and the leases waiting for work."""
        for changes in new:
            self.hub.publish(changes.tasks, changes.deleted)
            self.on_commit(changes)
        self.changed.set()
        self.changed = asyncio.Event()

    async def poll(self, closing: Callable[[], bool]) -> None:
        """Takes other processes' commits when the storage tells of some, and looks for them a few times a
        second anyway (a notification may be lost), until `closing()`."""
        loop = asyncio.get_running_loop()

        def wake(seq: int | None) -> None:  # from the storage's thread
            if seq is not None and seq <= self.follower.seq:
                return  # this replica's own commit, or one it has followed already
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._committed_elsewhere.set)

        stop = self.storage.follow_commits(wake)
        try:
            await self._poll(closing)
        finally:
            stop()

    async def _poll(self, closing: Callable[[], bool]) -> None:
        while not closing():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._committed_elsewhere.wait()
            self._committed_elsewhere.clear()
            try:
                if self.reader.log.last_seq() > self.follower.seq:
                    await self.catch_up()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the store thread has stopped
            except StorageUnavailable:
                pass  # the database is away (health says so): the next poll tries again
            except Exception:
                log.exception("following the change log failed")

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        readers = [self.reader, *self._readers]
        if self._follow_reader is not None:
            readers.append(self._follow_reader)
        for reader in readers:
            reader.close()
