"""The watch rules: one task's states, and every change of a filter with resume.

Live changes come from the watch hub, which the follower feeds in sequence order;
a resume first replays the change log, and the two meet at a sequence number so
nothing is missed or sent twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from taskhub.errors import TaskHubError
from taskhub.server.model import Scope, Task, TaskQuery
from taskhub.server.rules.units import Units
from taskhub.server.rules.watch import Event, Owner, WatchHub


class Watching:
    """WatchTask and WatchTasks over the hub and the change log."""

    def __init__(self, units: Units, hub: WatchHub, get_task: Callable[..., Awaitable[Task]]) -> None:
        self.units = units
        self.hub = hub
        self.get_task = get_task

    async def watch_task(self, uid: int, *, scope: Scope | None = None, owner: Owner = Owner()) -> AsyncIterator[Task]:
        """The task's current state, then each committed change, until a terminal status."""
        sub = self.hub.subscribe(uids=[uid], owner=owner)
        try:
            task = await self.get_task(uid, scope=scope)
            yield task
            seen = task.seq
            while not task.status.finished:
                event = await sub.get()
                if event.seq > seen:  # skip changes already contained in the first state
                    seen, task = event.seq, event.task
                    yield task
        finally:
            sub.close()

    async def watch_tasks(
        self,
        query: TaskQuery,
        after: int | None = None,
        *,
        started: Callable[[int], Awaitable[None]] | None = None,
        owner: Owner = Owner(),
    ) -> AsyncIterator[Event]:
        """Every committed change matching `query`, in sequence order, from after `after` (else from now).

        `started(cursor)` is awaited once the watch is subscribed and its cursor checked, before any
        change is sent: `cursor` is the sequence number the watch starts after.
        """
        if query.batch_uids is not None:
            # Membership grows while a watch runs; a change carries no batch membership to match on.
            raise TaskHubError("invalid_batch_uids", "`batchUids` cannot filter a watch.")
        sub = self.hub.subscribe(query=query, owner=owner)
        try:
            # Read after subscribing: a change the follower took is then either at most `last` or on
            # its way to us. In the commits' lane, so that a commit asked for after it cannot run before it.
            last = await self.units.call_in_commit_order(lambda: self.units.follower.seq)
            if after is not None and after > last:
                # A cursor handed out by another process on this database may be ahead of what this one followed.
                await self.units.catch_up()
                last = await self.units.call_in_commit_order(lambda: self.units.follower.seq)
            cursor = last if after is None else after
            if after is not None:
                await self._check_cursor(after, last)
            if started is not None:
                await started(cursor)
            if after is not None:
                async for event in self._replay(query, after, last):
                    cursor = event.seq
                    yield event
                cursor = max(cursor, last)
            while True:
                event = await sub.get()
                if event.seq > cursor:
                    cursor = event.seq
                    yield event
        finally:
            sub.close()

    async def _check_cursor(self, after: int, last: int) -> None:
        """Refuses a cursor ahead of the newest change, or older than the kept history."""
        if after > last:
            raise TaskHubError(
                "invalid_watch_cursor", f"Sequence number `{after}` is ahead of the newest change (`{last}`)."
            )
        if after < last:
            oldest = await self.units.read(lambda reader: reader.log.oldest_change())
            if oldest is None or oldest > after + 1:
                raise _too_old(after, oldest, last)

    async def _replay(self, query: TaskQuery, after: int, last: int) -> AsyncIterator[Event]:
        """Logged changes after `after` up to `last`; history pruned meanwhile ends the watch with an error."""
        cursor = after
        while cursor < last:
            changes = await self.units.read(lambda reader, after=cursor: reader.log.changes_after(after, 1_000))
            tasks, deleted = changes.tasks, changes.deleted
            if not tasks or tasks[0].seq != cursor + 1:
                raise _too_old(after, await self.units.read(lambda reader: reader.log.oldest_change()), last)
            for task in tasks:
                if task.seq > last:
                    return
                cursor = task.seq
                if query.matches(task):
                    yield Event(task, task.uid in deleted)


def _too_old(after: int, oldest: int | None, last: int) -> TaskHubError:
    return TaskHubError(
        "invalid_watch_cursor",
        f"Sequence number `{after}` is older than the kept history, which starts at"
        f" `{oldest if oldest is not None else last + 1}`; list the tasks again and watch from now.",
    )
