"""Units of work off the event loop, and what follows each commit.

Every write is one unit of work (`run`) on the store thread. Right after it commits,
on that thread, the follower takes its changes (reading first any other process's
commits it missed) into the finder; then, on the loop and in sequence order, the
watch hub publishes them and waiting lease calls wake. `catch_up` does the same for
commits made elsewhere, which `poll` looks for a few times a second.
Reads run on a read thread with its own connection, or on the loop for point reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from taskhub.errors import TaskHubError
from taskhub.server.index.follower import Follower, HistoryLost
from taskhub.server.rules.store_thread import StoreThread
from taskhub.server.rules.watch import WatchHub
from taskhub.server.storage.contract import Changes, Reader, Storage, StorageFull, TaskFinder, Transaction

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

    def __init__(self, storage: Storage, finder: TaskFinder, hub: WatchHub) -> None:
        self.storage = storage
        self.finder = finder
        self.hub = hub
        self.follower = Follower(finder, 0)
        self._thread = StoreThread("taskhub-store")
        # Reads that may take a while (lists, replays) run on their own thread and
        # connection, so they never queue behind writes nor hold writes up.
        self._local = threading.local()
        self._readers: list[Reader] = []
        self._reads = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="taskhub-reads", initializer=self._open_reader
        )
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
        # Called in every unit of work on the store thread, before it commits (the webhooks' outbox).
        self.before_commit: Callable[[Transaction], None] = lambda tx: None

    def _open_reader(self) -> None:
        self._local.reader = self.storage.reader()
        self._readers.append(self._local.reader)

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
    def unsaved(self) -> int:
        """How many changes the finder's saved state lacks (none when it saves nothing)."""
        return self.follower.seq - self.checkpointed if self.keeps_state else 0

    def _checkpoint(self) -> tuple[int, Callable[[], None] | None]:
        seq = self.follower.seq
        return seq, self.finder.checkpoint(seq, self._on_thread_reader().log.epoch())

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn(reader, *args)` on the read thread, with that thread's read-only connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, lambda: fn(self._local.reader, *args))

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

    def _unit(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """On the store thread: one unit of work, then the follower takes its changes."""
        try:
            with self.storage.transaction() as tx:
                result = fn(tx, *args)
                self.before_commit(tx)
                changes = tx.changes
        except StorageFull as full:
            raise TaskHubError("no_space_left_on_device", DISK_FULL) from full
        self._follow(loop, lambda reader: self.follower.take(changes, reader))
        return result

    async def catch_up(self) -> None:
        """Takes the commits made elsewhere since the last one followed."""
        loop = asyncio.get_running_loop()
        await self.call(self._follow, loop, self.follower.catch_up)

    def sync(self, tx: Transaction) -> None:
        """On the store thread, in a unit of work: the finder takes every commit made before it."""
        assert self._loop is not None, "load() first"
        if tx.log.last_seq() > self.follower.seq:  # one point read on the unit's own connection
            self._follow(self._loop, self.follower.catch_up)

    def _follow(self, loop: asyncio.AbstractEventLoop, step: Callable[[Reader], list[Changes]]) -> None:
        """On the store thread: one follower step; its changes go to the hub on the loop, in order."""
        reader = self._on_thread_reader()
        try:
            new = step(reader)
        except HistoryLost as lost:
            # Only when another process pruned the log past what this one followed.
            log.warning("%s: reading every task again; watches end and resume", lost)
            self.follower.seq = self.finder.reload(reader, fresh=True)
            self.follower.catch_up(reader)
            loop.call_soon_threadsafe(self._publish, [])  # wakes waiting leases: the finder changed
            loop.call_soon_threadsafe(
                self.hub.end_all, TaskHubError("unavailable", "Changes were missed; reconnect and resume.")
            )
            return
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
        """Looks for other processes' commits a few times a second, until `closing()`."""
        while not closing():
            await asyncio.sleep(POLL_INTERVAL)
            try:
                if self.reader.log.last_seq() > self.follower.seq:
                    await self.catch_up()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the store thread has stopped
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
