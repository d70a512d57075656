"""The watch hub: fans committed task changes out to streaming watchers.

The scheduler calls `publish()` on the event loop right after a transaction
commits, so nothing reaches a watcher before it is durable. Each watcher owns a
bounded queue; a watcher that falls behind is marked lagging and dropped rather
than ever slowing the scheduler or other watchers. Streams unsubscribe in
`finally`, so a client that goes away leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from taskhub.errors import TaskHubError
from taskhub.server.model import Task


class Subscription:
    """One watcher's bounded queue of committed task states."""

    def __init__(self, hub: WatchHub, uids: frozenset[int], size: int) -> None:
        self.hub = hub
        self.uids = uids
        self.queue: asyncio.Queue[Task] = asyncio.Queue(size)
        self.lagging = False

    def offer(self, task: Task) -> None:
        if self.lagging:
            return
        try:
            self.queue.put_nowait(task)
        except asyncio.QueueFull:
            self.lagging = True
            self.hub.unsubscribe(self)

    async def get(self) -> Task:
        if self.lagging and self.queue.empty():
            raise TaskHubError("watch_too_slow", "The watcher fell too far behind and was disconnected.")
        return await self.queue.get()

    def close(self) -> None:
        self.hub.unsubscribe(self)


class WatchHub:
    """Routes each committed task state to the subscriptions watching its uid."""

    def __init__(self, *, buffer: int = 256, max_watchers: int = 20_000) -> None:
        self.buffer = buffer
        self.max_watchers = max_watchers
        self._by_uid: dict[int, set[Subscription]] = {}
        self._count = 0

    @property
    def watchers(self) -> int:
        return self._count

    def subscribe(self, uids: Iterable[int]) -> Subscription:
        if self._count >= self.max_watchers:
            raise TaskHubError("too_many_watches", "Too many watches are open on this server; try again later.")
        sub = Subscription(self, frozenset(uids), self.buffer)
        for uid in sub.uids:
            self._by_uid.setdefault(uid, set()).add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        removed = False
        for uid in sub.uids:
            subs = self._by_uid.get(uid)
            if subs is not None and sub in subs:
                subs.discard(sub)
                removed = True
                if not subs:
                    del self._by_uid[uid]
        if removed:
            self._count -= 1

    def publish(self, tasks: Iterable[Task]) -> None:
        if not self._by_uid:
            return
        for task in tasks:
            for sub in tuple(self._by_uid.get(task.uid, ())):
                sub.offer(task)
