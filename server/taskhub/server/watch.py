"""The watch hub: fans committed task changes out to streaming watchers.

The scheduler calls `publish()` on the event loop right after a transaction
commits, so nothing reaches a watcher before it is durable. A watcher follows
one task (`WatchTask`) or a filter (`WatchTasks`); each owns a bounded queue,
and one that falls behind is cut off (it can resume from its last sequence
number) rather than ever slowing the scheduler or other watchers. Streams
unsubscribe in `finally`, so a client that goes away leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from taskhub.errors import TaskHubError
from taskhub.server.model import Task, TaskQuery


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change: the task's new state, or its last state when it was deleted."""

    task: Task
    deleted: bool = False

    @property
    def seq(self) -> int:
        return self.task.seq


class Subscription:
    """One watcher's bounded queue of committed changes."""

    def __init__(self, hub: WatchHub, uids: frozenset[int] | None, query: TaskQuery | None, size: int) -> None:
        self.hub = hub
        self.uids = uids
        self.query = query
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(size)
        self.lagging = False
        self.ended: TaskHubError | None = None

    def offer(self, event: Event) -> None:
        if self.lagging:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Cut off: what is queued is still delivered, then get() reports the lag.
            self.lagging = True
            self.hub.unsubscribe(self)

    async def get(self) -> Event:
        if self.queue.empty():
            if self.ended is not None:
                raise self.ended
            if self.lagging:
                raise TaskHubError(
                    "watch_too_slow",
                    "The watcher fell too far behind and was disconnected; resume from the last sequence number seen.")
        event = await self.queue.get()
        if event is None:  # the wake-up end() left
            raise self.ended
        return event

    def end(self, error: TaskHubError) -> None:
        """Ends the watch with `error` once what is queued has been delivered."""
        self.ended = error
        # Wake a waiting get(); a full queue needs no wake-up, get() sees `ended` once it drains.
        if not self.queue.full():
            self.queue.put_nowait(None)

    def close(self) -> None:
        self.hub.unsubscribe(self)


class WatchHub:
    """Routes each committed change to the watchers of its uid and of every filter it matches."""

    def __init__(self, *, buffer: int = 1_024, max_watchers: int = 20_000) -> None:
        self.buffer = buffer
        self.max_watchers = max_watchers
        self._by_uid: dict[int, set[Subscription]] = {}
        self._filtered: set[Subscription] = set()
        self._count = 0
        self.closed: TaskHubError | None = None

    @property
    def watchers(self) -> int:
        return self._count

    def subscribe(self, *, uids: Iterable[int] | None = None, query: TaskQuery | None = None) -> Subscription:
        """Watches the given uids, or else every change matching `query` (all changes when None)."""
        if self.closed is not None:
            raise self.closed
        if self._count >= self.max_watchers:
            raise TaskHubError("too_many_watches", "Too many watches are open on this server; try again later.")
        sub = Subscription(self, None if uids is None else frozenset(uids), query, self.buffer)
        if sub.uids is None:
            self._filtered.add(sub)
        for uid in sub.uids or ():
            self._by_uid.setdefault(uid, set()).add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        removed = sub in self._filtered
        self._filtered.discard(sub)
        for uid in sub.uids or ():
            subs = self._by_uid.get(uid)
            if subs is not None and sub in subs:
                subs.discard(sub)
                removed = True
                if not subs:
                    del self._by_uid[uid]
        if removed:
            self._count -= 1

    def end_all(self, error: TaskHubError) -> None:
        """Ends every watch (at shutdown) with a clear status instead of a cut connection; refuses new ones."""
        self.closed = error
        for sub in {*self._filtered, *(s for subs in self._by_uid.values() for s in subs)}:
            sub.end(error)
            self.unsubscribe(sub)

    def publish(self, tasks: Iterable[Task], deleted: frozenset[int] = frozenset()) -> None:
        if not self._count:
            return
        for task in tasks:
            event = Event(task, task.uid in deleted)
            for sub in tuple(self._by_uid.get(task.uid, ())):
                sub.offer(event)
            for sub in tuple(self._filtered):
                if sub.query is None or sub.query.matches(task):
                    sub.offer(event)
