"""The watch hub: fans committed task changes out to streaming watchers.

The scheduler calls `publish()` on the event loop right after a transaction
commits, so nothing reaches a watcher before it is durable. A watcher follows
one task (`WatchTask`) or a filter (`WatchTasks`); each owns a bounded queue,
and one that falls behind is cut off (it can resume from its last sequence
number) rather than ever slowing the scheduler or other watchers. Streams
unsubscribe in `finally`, so a client that goes away leaves nothing behind.
Watch slots are capped in all, per key and per gRPC connection (`Owner`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from taskhub.errors import TaskHubError
from taskhub.metadata import GATEWAY_TOKEN
from taskhub.server.model import Task, TaskQuery

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose watch slot a subscription takes: a key (a digest of it) and a gRPC connection.

    `connection` is None for the streams of the gateway started beside the server: they all
    share its one channel, so the gateway counts them per HTTP client instead.
    """

    key: str = ANONYMOUS
    connection: str | None = None

    @classmethod
    def of(
        cls, authorization: str | None, metadata: Sequence[tuple[str, str]] | None, peer: str, gateway_token: str | None
    ) -> Owner:
        """The owner of a call whose key was accepted; `authorization` None when no master key is set."""
        key = ANONYMOUS
        if authorization:
            # However the header is spelled (`bearer`, spaces), one key is one bucket.
            token = authorization.strip().partition(" ")[2].strip()
            key = hashlib.sha256(token.encode()).hexdigest()
        connection: str | None = peer
        if gateway_token is not None:
            for name, value in metadata or ():
                if name == GATEWAY_TOKEN and hmac.compare_digest(value.encode(), gateway_token.encode()):
                    connection = None
        return cls(key, connection)


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

    def __init__(
        self, hub: WatchHub, uids: frozenset[int] | None, query: TaskQuery | None, size: int, owner: Owner
    ) -> None:
        self.hub = hub
        self.owner = owner
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
                    "The watcher fell too far behind and was disconnected; resume from the last sequence number seen.",
                )
        event = await self.queue.get()
        if event is None:  # the wake-up end() left, after setting `ended`
            assert self.ended is not None
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

    def __init__(
        self, *, buffer: int = 1_024, max_watchers: int = 20_000, per_key: int = 10_000, per_connection: int = 2_000
    ) -> None:
        self.buffer = buffer
        self.max_watchers = max_watchers
        self.per_key = per_key
        self.per_connection = per_connection
        # Set when the server starts its own gateway: its streams carry it (Owner.of).
        self.gateway_token: str | None = None
        self._by_uid: dict[int, set[Subscription]] = {}
        self._filtered: set[Subscription] = set()
        self._count = 0
        self._by_key: dict[str, int] = {}
        self._by_connection: dict[str, int] = {}
        self.closed: TaskHubError | None = None

    @property
    def watchers(self) -> int:
        return self._count

    def subscribe(
        self, *, uids: Iterable[int] | None = None, query: TaskQuery | None = None, owner: Owner = Owner()
    ) -> Subscription:
        """Watches the given uids, or else every change matching `query` (all changes when None)."""
        if self.closed is not None:
            raise self.closed
        self._check_slots(owner)
        sub = Subscription(self, None if uids is None else frozenset(uids), query, self.buffer, owner)
        if sub.uids is None:
            self._filtered.add(sub)
        for uid in sub.uids or ():
            self._by_uid.setdefault(uid, set()).add(sub)
        self._count += 1
        self._by_key[owner.key] = self._by_key.get(owner.key, 0) + 1
        if owner.connection is not None:
            self._by_connection[owner.connection] = self._by_connection.get(owner.connection, 0) + 1
        return sub

    def _check_slots(self, owner: Owner) -> None:
        if self._count >= self.max_watchers:
            raise TaskHubError("too_many_watches", "Too many watches are open on this server; try again later.")
        if self._by_key.get(owner.key, 0) >= self.per_key:
            raise TaskHubError(
                "too_many_watches",
                f"This key already holds {self.per_key} open watches, its limit"
                " (`--max-watchers-per-key`); close one before opening another.",
            )
        if owner.connection is not None and self._by_connection.get(owner.connection, 0) >= self.per_connection:
            raise TaskHubError(
                "too_many_watches",
                f"This connection already holds {self.per_connection} open watches, its limit"
                " (`--max-watchers-per-connection`); close one before opening another.",
            )

    def _release(self, owner: Owner) -> None:
        self._count -= 1
        _take_one(self._by_key, owner.key)
        if owner.connection is not None:
            _take_one(self._by_connection, owner.connection)

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
            self._release(sub.owner)

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


def _take_one(counts: dict[str, int], name: str) -> None:
    left = counts[name] - 1
    if left:
        counts[name] = left
    else:
        del counts[name]
