"""The lease half of the SQLite store: batches leased to workers, renewals, reports, expiry.

`Store` inherits this mixin; it shares the store's connection and `atomic()`,
so every lease transition is one transaction like every other state change.
A lease row lives on after its batch ends, with the reason in `state`, so a
late renewal or report can be told precisely why its lease is gone.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pyroaring import BitMap

from taskhub.errors import TaskHubError
from taskhub.server.model import (
    BATCH_GROUPS,
    SERVER_PRIORITY,
    Scope,
    Task,
    TaskQuery,
    TaskStatus,
    TaskType,
    finished_details,
    task_indexes,
)

ACTIVE = "active"
# Why a lease ended, as told to a late renewal or report.
ENDED = {
    "completed": "its batch was already reported",
    "expired": "it expired before being renewed",
    "canceled": "its batch was canceled",
    "released": "it was released",
    "lost": "the server restarted",
}
SCAN_LIMIT = 100_000  # rows read looking for a batch's head, at most
SCAN_CHUNK = 16  # enqueued tasks read by the first query looking for a batch's head
ENQUEUED = frozenset({TaskStatus.ENQUEUED})
PROCESSING = frozenset({TaskStatus.PROCESSING})


class LeaseStore:
    """Lease SQL; mixed into `Store`, whose `conn`, `atomic`, `index`, `_save(_many)` and `get_tasks` it uses.

    Which tasks are enqueued or processing, and in which index, comes from the index;
    the rows come from SQL by uid.
    """

    def lease_batch(
        self,
        *,
        token: str,
        worker: str,
        types: frozenset[TaskType] | None,
        index_uids: frozenset[str] | None,
        scope: Scope | None,
        max_tasks: int,
        now: int,
        duration: int,
    ) -> list[Task]:
        """Leases the oldest runnable batch a worker can take; answers its tasks (none: nothing runnable)."""
        with self.atomic():
            # Server-run tasks outrank every worker task: leave the queue to them first.
            if self.index.select(TaskQuery(statuses=ENQUEUED, types=frozenset(SERVER_PRIORITY))):
                return []
            head = self._find_head(types, index_uids, scope)
            if head is None:
                return []
            batch = [head, *self._followers(head, types, max_tasks - 1)]
            self.conn.execute(
                "INSERT INTO leases (token, worker, deadline, duration, state) VALUES (?, ?, ?, ?, ?)",
                (token, worker, now + duration, duration, ACTIVE),
            )
            for task in batch:
                task.status, task.started_at = TaskStatus.PROCESSING, now
            return self._save_many(batch, lease=token)

    def _find_head(self, types, index_uids, scope) -> Task | None:
        """The oldest enqueued task whose indexes are free and that heads its indexes' queues."""
        # What runs holds its indexes: its own, read off the index; a swap's, read off its details.
        processing = self.index.select(TaskQuery(statuses=PROCESSING))
        swaps = processing & self.index.select(TaskQuery(types=frozenset({TaskType.INDEX_SWAP})))
        blocked = self.index.index_uids_of(processing - swaps)
        for swap in self.get_tasks(swaps):
            blocked |= task_indexes(swap.index_uid, swap.type, swap.details)
        enqueued = self.index.select(TaskQuery(statuses=ENQUEUED))
        if index_uids is not None or scope is not None:
            # Only tasks of the indexes this worker may take, and swaps (which name their indexes in
            # their details), can qualify. The others touch none of those indexes, so they cannot
            # hold a candidate back either: skipping them spares reading rows that never qualify.
            enqueued = self.index.select(
                TaskQuery(statuses=ENQUEUED, index_uids=index_uids, scope=scope)
            ) | self.index.select(TaskQuery(statuses=ENQUEUED, types=frozenset({TaskType.INDEX_SWAP})))
        # Tasks of busy indexes wait for them (per-index uid order): they are dropped unread. A swap
        # belongs to no index, so it is always read, and the indexes it names are busy from then on.
        candidates = enqueued - self._waiting_in(blocked)
        read, chunk = 0, SCAN_CHUNK
        while candidates and read < SCAN_LIMIT:
            # The head is most often among the first few: read a few rows, then more and more.
            rows, read, chunk = candidates[:chunk], read + chunk, min(chunk * 4, 4_096)
            held = set()
            for task in self.get_tasks(rows):
                keys = task_indexes(task.index_uid, task.type, task.details)
                takeable = (
                    not keys & blocked
                    and (types is None or task.type in types)
                    and (index_uids is None or keys <= index_uids)
                    and (scope is None or (keys and all(scope.allows(k) for k in keys)))
                )
                if takeable:
                    return task
                # Later tasks of these indexes must wait for this one: per-index uid order.
                held |= keys - blocked
                blocked |= keys
            candidates = candidates - rows - self._waiting_in(held)
        return None

    def _waiting_in(self, indexes: set[str]) -> BitMap:
        """The enqueued tasks of `indexes`."""
        if not indexes:
            return BitMap()
        return self.index.select(TaskQuery(statuses=ENQUEUED, index_uids=frozenset(indexes)))

    def _followers(self, head: Task, types, room: int) -> list[Task]:
        """The enqueued tasks right after `head` in its index that can join its batch."""
        group = BATCH_GROUPS.get(head.type)
        if group is None or room <= 0:
            return []
        # An enqueued swap touching this index ends the run of batchable tasks.
        swaps = self.index.select(TaskQuery(statuses=ENQUEUED, types=frozenset({TaskType.INDEX_SWAP})))
        stop = min(
            (
                swap.uid
                for swap in self.get_tasks(swaps[swaps.rank(head.uid) :])
                if head.index_uid in task_indexes(None, TaskType.INDEX_SWAP, swap.details)
            ),
            default=None,
        )
        queue = self.index.select(TaskQuery(statuses=ENQUEUED, index_uids=frozenset({head.index_uid})))
        after = queue.rank(head.uid)  # how many of them come up to the head, itself included
        followers = []
        for task in self.get_tasks(queue[after : after + room]):
            if (
                (stop is not None and task.uid > stop)
                or BATCH_GROUPS.get(task.type) != group
                or (types is not None and task.type not in types)
            ):
                break
            followers.append(task)
        return followers

    def _lease_state(self, token: str, now: int) -> tuple[str, int] | None:
        row = self.conn.execute("SELECT state, deadline, duration FROM leases WHERE token = ?", (token,)).fetchone()
        if row is None:
            return None
        state, deadline, duration = row
        if state == ACTIVE and deadline < now:
            state = "expired"  # not yet swept by tick(), but already lost
        return state, duration

    def _lost(self, token: str, state: tuple[str, int] | None) -> TaskHubError:
        if state is None:
            return TaskHubError("lease_lost", f"Lease `{token}` is unknown.")
        return TaskHubError("lease_lost", f"Lease `{token}` was lost: {ENDED[state[0]]}.")

    def renew_lease(self, token: str, now: int, duration: int | None) -> int | None:
        """Extends an active lease; answers the new deadline, or None when its batch was canceled."""
        with self.atomic():
            state = self._lease_state(token, now)
            if state is not None and state[0] == "canceled":
                return None
            if state is None or state[0] != ACTIVE:
                raise self._lost(token, state)
            deadline = now + (duration or state[1])
            self.conn.execute("UPDATE leases SET deadline = ? WHERE token = ?", (deadline, token))
            return deadline

    def _leased(self, token: str) -> list[Task]:
        return self.get_tasks(
            r[0]
            for r in self.conn.execute(
                "SELECT uid FROM tasks WHERE lease = ? AND status = ?", (token, int(TaskStatus.PROCESSING))
            )
        )

    def complete_lease(
        self,
        token: str,
        outcomes: dict[int, tuple[object, dict | None]],
        now: int,
        merge: Callable[[Task, object], dict | None],
    ) -> list[Task]:
        """Finishes every task of an active lease with its outcome, in one transaction.

        `outcomes` maps each uid to (reported details, error); `merge(task, reported)`
        answers the details to store or raises, which rolls everything back.
        """
        with self.atomic():
            state = self._lease_state(token, now)
            if state is None or state[0] != ACTIVE:
                raise self._lost(token, state)
            tasks = self._leased(token)
            leased = {t.uid for t in tasks}
            stray = sorted(set(outcomes) - leased)
            if stray:
                raise TaskHubError("invalid_task_outcome", f"Task `{stray[0]}` is not part of lease `{token}`.")
            missing = sorted(leased - set(outcomes))
            if missing:
                raise TaskHubError("invalid_task_outcome", f"The outcome of task `{missing[0]}` is missing.")
            for task in tasks:
                reported, error = outcomes[task.uid]
                details = merge(task, reported)
                task.status = TaskStatus.FAILED if error else TaskStatus.SUCCEEDED
                task.details = finished_details(details, success=error is None)
                task.error, task.finished_at = error, now
            self.conn.execute("UPDATE leases SET state = 'completed' WHERE token = ?", (token,))
            return self._save_many(tasks, lease=None)

    def _requeue(self, tasks: list[Task]) -> list[Task]:
        for task in tasks:
            task.status, task.started_at = TaskStatus.ENQUEUED, None
        return self._save_many(tasks, lease=None)

    def release_lease(self, token: str, now: int) -> list[Task]:
        with self.atomic():
            state = self._lease_state(token, now)
            if state is None or state[0] != ACTIVE:
                raise self._lost(token, state)
            self.conn.execute("UPDATE leases SET state = 'released' WHERE token = ?", (token,))
            return self._requeue(self._leased(token))

    def expire_leases(self, now: int, max_attempts: int) -> list[Task]:
        """Puts the tasks of expired leases back to enqueued, or fails those out of attempts."""
        with self.atomic():
            tokens = [
                r[0]
                for r in self.conn.execute("SELECT token FROM leases WHERE state = ? AND deadline < ?", (ACTIVE, now))
            ]
            changed = []
            for token in tokens:
                self.conn.execute("UPDATE leases SET state = 'expired' WHERE token = ?", (token,))
                for task in self._leased(token):
                    attempts = self.conn.execute(
                        "UPDATE tasks SET attempts = attempts + 1 WHERE uid = ? RETURNING attempts", (task.uid,)
                    ).fetchone()[0]
                    if attempts < max_attempts:
                        changed += self._requeue([task])
                        continue
                    task.status, task.finished_at = TaskStatus.FAILED, now
                    task.details = finished_details(task.details, success=False)
                    task.error = {
                        "message": f"The task's lease expired {attempts} times without a report from a worker;"
                        " it will not be tried again.",
                        "code": "task_attempts_exhausted",
                        "type": "system",
                        "link": "https://docs.meilisearch.com/errors#task_attempts_exhausted",
                    }
                    changed.append(self._save(task, lease=None))
            return changed

    def cancel_leases_of(self, canceled: list[Task]) -> list[Task]:
        """Stops the batches holding canceled tasks: their leases end and their other tasks go back."""
        tokens = {
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT lease FROM tasks WHERE lease IS NOT NULL AND uid IN (SELECT value FROM json_each(?))",
                (json.dumps([t.uid for t in canceled]),),
            )
        }
        requeued = []
        for token in tokens:
            self.conn.execute("UPDATE leases SET state = 'canceled' WHERE token = ?", (token,))
            requeued += self._requeue(self._leased(token))
        self.conn.execute(
            "UPDATE tasks SET lease = NULL WHERE uid IN (SELECT value FROM json_each(?))",
            (json.dumps([t.uid for t in canceled]),),
        )
        return requeued

    def lose_all_leases(self) -> None:
        """On start: no lease survives a server restart."""
        self.conn.execute("UPDATE leases SET state = 'lost' WHERE state = ?", (ACTIVE,))
        self.conn.execute("UPDATE tasks SET lease = NULL WHERE lease IS NOT NULL")
