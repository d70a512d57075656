"""The storage contract: what the queue's rules need from a database, in the domain's words.

A `Storage` opens units of work (`transaction()`); in one, the rules read and write
tasks, leases, keys, idempotency keys, webhooks and the change log through their tables, and the whole unit
commits or rolls back. A storage stores and guarantees; it decides nothing (which
task runs next, what a cancelation does, when the queue is full are the rules').

Every implementation passes tests/test_storage_contract.py, which opens two
storages on one database in two processes to check the concurrency guarantees
written below. Nothing here names a database, a thread or a bitmap.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskhub.errors import TaskHubError
from taskhub.server.batch import Batch, BatchQuery, ProgressStep
from taskhub.server.model import KeyRecord, Scope, Task, TaskKind, TaskQuery, TaskStatus

# What an enqueue stores: (index uid, type, details).
NewTask = tuple[str | None, TaskKind, dict[str, Any] | None, dict[str, Any] | None]
# A task's filterable fields as `TaskTable.index_rows` answers them, -1 for nulls: (uid, status, type, canceled_by,
# enqueued_at, started_at, finished_at, index_uid).
IndexRow = tuple[int, int, int, int, int, int, int, str | None]


class StorageFull(Exception):
    """The database refused to grow: the unit of work was rolled back whole."""


class StorageUnavailable(TaskHubError):
    """The database cannot be reached: the unit of work or read failed (a unit of work lost during its
    commit may have committed). The storage reconnects on its next use. Public as `unavailable`."""

    def __init__(self, detail: str) -> None:
        super().__init__("unavailable", "The task database cannot be reached right now; retry later.")
        self.detail = detail


class Keep:
    """`TaskTable.save`'s default for `lease`: the task's lease stays as it is."""


KEEP = Keep()


@dataclass(slots=True)
class Changes:
    """Task states in sequence order, as logged: a deleted task appears with its last state
    (no details nor error) and its uid in `deleted`."""

    tasks: list[Task] = field(default_factory=list)
    deleted: frozenset[int] = frozenset()


# A lease's `state` while it holds its tasks; any other state says why it ended.
ACTIVE = "active"


@dataclass(slots=True)
class LeaseRecord:
    """A lease as stored; `state` is ACTIVE or why it ended."""

    token: str
    worker: str
    deadline: int
    duration: int
    state: str
    # The batch the lease runs (None for leases stored before batches existed).
    batch_uid: int | None = None


class ChangeLog(Protocol):
    """Every committed task state under its sequence number.

    Guarantees: sequence numbers are given in commit order, with no gap, across every
    storage on the same database (two processes committing at once still make one
    gapless run); a change is readable as soon as, and not before, its unit of work commits.
    """

    def last_seq(self) -> int:
        """The newest sequence number given (0 before any change)."""
        ...

    def oldest_change(self) -> int | None:
        """The oldest sequence number still kept, None when the log is empty."""
        ...

    def epoch(self) -> str:
        """Names this history of sequence numbers: it changes when the history does not continue (a dump
        loaded), so a state saved at some sequence number is never applied to another history."""
        ...

    def changes_after(self, seq: int, limit: int) -> Changes:
        """Up to `limit` kept changes after `seq`, in sequence order."""
        ...

    def change_bytes(self) -> int:
        """The bytes the kept changes take."""
        ...

    def prune_changes(
        self,
        keep: int,
        keep_bytes: int | None = None,
        *,
        keep_after: int | None = None,
        check: Callable[[Transaction], None] | None = None,
    ) -> int:
        """Drops the oldest changes until at most `keep` remain, of at most `keep_bytes`; answers how many went.

        Only ever the oldest: what stays is a gapless run up to the newest change. `keep_after`: the changes
        after this sequence number stay too, unless `keep_bytes` needs them gone. `check` runs first in the
        unit of work: what it raises rolls the unit back, and nothing is dropped. It is a unit of work
        of its own: call it on the storage's writer, never inside a unit of work nor on a reader.
        """
        ...


class TaskTable(Protocol):
    """Tasks by uid, and the uids a cancelation or deletion matched.

    Every write logs the tasks' new states in the change log of the same unit of work,
    under fresh sequence numbers in the order given.
    """

    def next_uid(self) -> int:
        """The uid the next inserted task gets."""
        ...

    def count(self) -> int:
        """How many tasks are stored."""
        ...

    def insert(self, items: Sequence[NewTask], now: int) -> list[Task]:
        """New enqueued tasks with consecutive uids from `next_uid()`, in the order given."""
        ...

    def get(self, uid: int) -> Task | None: ...

    def get_many(self, uids: Iterable[int], statuses: frozenset[TaskStatus] | None = None) -> list[Task]:
        """The tasks of these uids that exist (and have one of `statuses`), by uid."""
        ...

    def get_page(self, uids: list[int], budget: int) -> tuple[list[Task], int | None]:
        """The tasks of `uids` (sorted one way), in that order, until their stored size passes `budget`.

        Answers the tasks and the uid of the first task left out for size (None if none was);
        the first task always fits.
        """
        ...

    def save(self, tasks: list[Task], *, lease: str | Keep | None = KEEP) -> list[Task]:
        """Writes every mutable field of `tasks` (and their lease unless KEEP); gives each its new `seq`."""
        ...

    def delete(self, uids: Iterable[int], statuses: frozenset[TaskStatus]) -> list[Task]:
        """Deletes the tasks of `uids` that have one of `statuses`; answers their last states by uid.

        Each is logged as a deletion, without its details and error.
        """
        ...

    def waiting(self) -> list[tuple[int, int]]:
        """(uid, runAt) of every enqueued task with a `runAt` in its extra fields (microseconds), by uid.

        What a start rebuilds the not-yet-due tasks from: found without reading every row.
        """
        ...

    def save_matches(self, uid: int, matched: Sequence[int]) -> None:
        """Keeps the uids the cancelation or deletion `uid` matched when it was enqueued."""
        ...

    def matched_uids(self, uid: int) -> list[int]: ...

    def forget_matches(self, uids: Iterable[int]) -> None: ...

    def index_rows(self, after_uid: int, limit: int) -> list[IndexRow]:
        """A chunk of every task's filterable fields in uid order, for building an index."""
        ...

    def iter_tasks(self, batch: int = 1_000) -> Iterator[tuple[Task, list[int] | None]]:
        """Every task in uid order with the uids it matched (cancelations and deletions)."""
        ...

    def load(self, tasks: Iterable[tuple[Task, list[int] | None]], next_uid: int) -> int:
        """Fills an empty database from a dump; answers how many tasks. Nothing is logged: an index rebuilds."""
        ...


class LeaseTable(Protocol):
    """Leases and which tasks they hold; a lease row stays after it ends, with why in `state`."""

    def insert(self, lease: LeaseRecord) -> None: ...

    def get(self, token: str) -> LeaseRecord | None: ...

    def update(self, token: str, *, state: str | None = None, deadline: int | None = None) -> None: ...

    def tasks_of(self, token: str) -> list[Task]:
        """The processing tasks the lease holds, by uid."""
        ...

    def expired(self, now: int) -> list[str]:
        """Tokens of active leases whose deadline is before `now`."""
        ...

    def holding(self, uids: Iterable[int]) -> set[str]:
        """Tokens of the leases holding any of these tasks."""
        ...

    def release_tasks(self, uids: Iterable[int]) -> None:
        """These tasks are held by no lease any more (not a logged change)."""
        ...

    def end_all(self, state: str) -> None:
        """Every active lease ends with `state`, and no task is held any more."""
        ...

    def count_active(self) -> int:
        """How many leases are active (held by a worker, not yet ended), from every storage on the database."""

    def held(self) -> list[tuple[LeaseRecord, list[int]]]:
        """Every active lease (by token) with the uids of the processing tasks it holds (by uid; none is possible).

        What an operator's view of the workers reads: found through the index on active leases and the
        one on leased tasks, never a scan of the task rows.
        """
        ...


class BatchTable(Protocol):
    """Batches by uid: what one lease or one server-run task processed, and which tasks each held.

    A batch is written in the unit of work that opens it and rewritten in the ones that end it or
    record a worker's progress; these writes are not logged (the task changes of the same unit of
    work are). Uids come from one counter, in commit order, from 0, never reused, across every
    storage on the database.
    """

    def next_uid(self) -> int:
        """The uid the next inserted batch gets."""
        ...

    def insert(self, batch: Batch, task_uids: Sequence[int]) -> Batch:
        """A new batch under `next_uid()` holding these tasks; sets and answers `batch` with its uid."""
        ...

    def get(self, uid: int) -> Batch | None:
        """The batch with its progress (None once ended or before any report: [] while open)."""
        ...

    def get_page(self, uids: list[int], budget: int) -> tuple[list[Batch], int | None]:
        """As `TaskTable.get_page`: in the order given, until their stored size passes `budget`."""
        ...

    def save(self, batch: Batch) -> None:
        """Rewrites what can change (finished_at, counts, details, index_uid, lease_state); drops the
        progress once the batch ended."""
        ...

    def add_tasks(self, uid: int, task_uids: Sequence[int]) -> None:
        """More tasks for a batch (a cancelation's batch takes the tasks it canceled)."""
        ...

    def task_uids_of(self, uids: Iterable[int]) -> list[int]:
        """The tasks these batches held, sorted, each once (deleted tasks have left)."""
        ...

    def batches_of(self, task_uids: Iterable[int]) -> list[int]:
        """The batches that held any of these tasks, sorted."""
        ...

    def set_progress(self, uid: int, steps: Sequence[ProgressStep]) -> None:
        """Replaces an open batch's progress."""
        ...

    def open_uids(self) -> list[int]:
        """Batches not ended, by uid (for the start's recovery)."""
        ...

    def forget_tasks(self, task_uids: Iterable[int]) -> list[int]:
        """These tasks were deleted: they leave every batch; batches left with no task are deleted, and
        their uids answered. The other batches' counts stay as they were."""
        ...

    def count(self) -> int:
        """How many batches are stored."""
        ...


class BatchFinder(Protocol):
    """Which batches match a `BatchQuery`: a page and a total, read from the committed batches."""

    def page(self, query: BatchQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        """Up to `limit + 1` matching uids from `from_uid` (inclusive), newest first unless `reverse`, and the total."""
        ...


class KeyTable(Protocol):
    """API keys, without their secrets."""

    def all_keys(self) -> list[KeyRecord]: ...

    def insert_key(self, key: KeyRecord) -> bool:
        """Stores a new key; False when its uid is taken."""
        ...

    def update_key(self, uid: str, fields: dict[str, Any], now: int) -> KeyRecord | None: ...

    def delete_key(self, uid: str) -> bool: ...

    def version(self) -> int:
        """A number every key write (insert, update, delete) changes, across every storage on the database: a
        cache of the keys is current while it reads the same."""
        ...


class TaskTypeTable(Protocol):
    """The codes task types registered at the server are stored under (Meilisearch's 11 have theirs).

    Guarantees: a name keeps its code for the database's life, and no two names share one, across
    every storage on the database (two registering at once serialize like any unit of work).
    """

    def all(self) -> list[tuple[int, str]]:
        """Every registered (code, name), by code."""
        ...

    def register(self, names: Iterable[str]) -> list[tuple[int, str]]:
        """Gives each name not registered yet a free code; answers `all()`. ValueError when codes run out."""
        ...


@dataclass(slots=True)
class IdempotencyRecord:
    """What an enqueue with an idempotency key stored: its key, its request, and the tasks it made.

    `key` names the caller and its key together (a digest: the key itself is not kept); `request`
    is a digest of the request; the tasks are `count` consecutive uids from `first_uid`,
    enqueued at `created_at`.
    """

    key: bytes
    request: bytes
    first_uid: int
    count: int
    created_at: int


class IdempotencyTable(Protocol):
    """Idempotency keys, read and written in the unit of work that enqueues, so two processes racing one
    key make one set of tasks: the second unit of work finds the first's record."""

    def get_keys(self, keys: Sequence[bytes]) -> dict[bytes, IdempotencyRecord]:
        """The stored records of these keys, by key (a key never stored is absent)."""
        ...

    def put_keys(self, records: Sequence[IdempotencyRecord]) -> None:
        """Stores the records (of distinct keys), each replacing one of the same key (an expired one)."""
        ...

    def prune_keys(self, before: int, keep: int) -> int:
        """Drops the records created before `before`, then the oldest past the `keep` newest; answers how many."""
        ...


@dataclass(slots=True, frozen=True)
class Leader:
    """Which server runs the server's own work (`name`), in which `term`, until when (`deadline`, microseconds)
    unless it renews; `term` 0 and `name` "" before any server led."""

    name: str
    term: int
    deadline: int


NO_LEADER = Leader("", 0, 0)


class ReplicaTable(Protocol):
    """The servers (replicas) serving one database: the leader row, and how far each has followed the log.

    Guarantees: read and written in units of work like any table, so two servers claiming the lead at
    once serialize, and a unit of work that read the leader row commits only if it still holds. A
    storage that one server alone may serve (SQLite: one per file) may keep them for its own process.
    """

    def leader(self) -> Leader:
        """The leader row (NO_LEADER before any)."""
        ...

    def set_leader(self, leader: Leader) -> None: ...

    def report(self, name: str, seq: int, now: int) -> None:
        """The server `name` has followed the change log up to `seq`, as of `now`."""
        ...

    def slowest(self, since: int) -> int | None:
        """The lowest position reported at or after `since` by any server (None when none did)."""
        ...

    def leave(self, name: str) -> None:
        """The server `name` stopped: its position no longer holds changes back."""


@dataclass(slots=True)
class WebhookRecord:
    """A webhook as stored: where finished tasks go, and how far its deliveries got.

    `delivered` is the last outbox entry it took (sent, or dropped past the outbox's bound), `dropped`
    how many entries it lost to that bound. The reserved webhook (`--task-webhook-url`) is stored under
    the nil uuid with an empty url: its url and header come from the settings, its progress from here.
    """

    uuid: str
    url: str
    headers: dict[str, str]
    secret: str | None
    created_at: int
    delivered: int = 0
    dropped: int = 0


class WebhookTable(Protocol):
    """Webhooks, and the outbox of finished tasks they are owed: one shared run of entries with
    consecutive ids, each webhook's progress a cursor into it.

    Guarantees: entries are numbered in commit order with no gap, across every storage on the database;
    an entry every webhook took is deleted; the outbox never holds more than the `bound` it was last
    given: past it the oldest entries go, counted in `dropped` of each webhook that had not taken them.
    """

    def all_webhooks(self) -> list[WebhookRecord]:
        """Every webhook, by creation time then uuid."""
        ...

    def get_webhook(self, uuid: str) -> WebhookRecord | None: ...

    def has_webhooks(self) -> bool:
        """Whether any webhook is stored (asked by every unit of work that finishes tasks)."""
        ...

    def put_webhook(self, record: WebhookRecord) -> None:
        """Stores a new webhook (owed only what is added from now on) or rewrites an existing one's url, headers
        and secret, its progress kept."""
        ...

    def delete_webhook(self, uuid: str) -> bool:
        """False when no such webhook; the entries no other webhook is owed go with it."""
        ...

    def add_outbox(self, task_uids: Sequence[int], bound: int) -> int:
        """Appends an entry per task uid (in the order given), then drops the oldest entries past `bound`;
        answers how many (entry, webhook) pairs were dropped."""
        ...

    def outbox_after(self, after: int, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` entries (id, task uid) after id `after`, by id."""
        ...

    def mark_delivered(self, uuid: str, upto: int) -> None:
        """The webhook took every entry up to id `upto` (a cursor never goes back); entries every webhook
        took are deleted."""
        ...

    def outbox_size(self) -> int:
        """How many entries the outbox holds."""
        ...


class Transaction(Protocol):
    """One unit of work: everything done through it commits together or not at all.

    Guarantees: units of work on one database are serializable; two never interleave their
    writes, so what a unit of work read is still true when it commits. A unit of work sees
    its own writes, and every commit made before it began, from any process.
    """

    @property
    def tasks(self) -> TaskTable: ...

    @property
    def leases(self) -> LeaseTable: ...

    @property
    def log(self) -> ChangeLog: ...

    @property
    def keys(self) -> KeyTable: ...

    @property
    def task_types(self) -> TaskTypeTable: ...

    @property
    def idempotency(self) -> IdempotencyTable: ...

    @property
    def batches(self) -> BatchTable: ...

    @property
    def replicas(self) -> ReplicaTable: ...

    @property
    def webhooks(self) -> WebhookTable: ...

    @property
    def changes(self) -> Changes:
        """What this unit of work logged so far, in sequence order.

        The tasks are the objects given to the writes, not copies (a copy per change costs every
        commit): change a task again after saving it in the same unit of work, and save it again.
        """
        ...

    def used_bytes(self) -> int:
        """The bytes the database uses (for the queue-full rule)."""
        ...


class Storage(Protocol):
    """A database of tasks: units of work for writes, read-only views for reads.

    `log` is the writer's change log, for pruning (which commits on its own).
    """

    @property
    def log(self) -> ChangeLog: ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Opens a unit of work: it commits on leaving the block, and rolls back whole on an exception.

        Raises `StorageFull` (after rolling back) when the database has no room left.
        """
        ...

    def reader(self, *, scan: bool = False) -> Reader:
        """A read-only view for one thread; it always reads the newest committed state.

        `scan`: for reading much once (building an index, a dump, following the log) rather than
        the same pages often; an implementation may then read without caching the file in memory.
        """
        ...

    def renew_epoch(self) -> None:
        """Starts a new history (`ChangeLog.epoch`): the database was put in place from a copy, so what was
        saved against the history before (at some sequence number) no longer applies."""
        ...

    def backup(self, target: str | pathlib.Path) -> None:
        """A consistent copy of the whole database, in the storage's own format."""
        ...

    def follow_commits(self, wake: Callable[[int | None], None]) -> Callable[[], None]:
        """Calls `wake` (from any thread) soon after a unit of work that logged changes commits, in this process
        or another, with the newest sequence number it logged (None when that is not known); answers a function
        that stops it.

        A hint, not a guarantee: it may call `wake` when nothing new committed (after a lost connection,
        when some may have been missed), and an implementation may never call it; readers that must see
        every commit also look at `ChangeLog.last_seq` now and then.
        """
        ...

    def close(self) -> None: ...


class Reader(Protocol):
    """Reads outside a unit of work; `snapshot()` makes several reads see one committed state."""

    @property
    def tasks(self) -> TaskTable: ...

    @property
    def log(self) -> ChangeLog: ...

    @property
    def keys(self) -> KeyTable: ...

    @property
    def task_types(self) -> TaskTypeTable: ...

    @property
    def batches(self) -> BatchTable: ...

    @property
    def batch_finder(self) -> BatchFinder: ...

    @property
    def leases(self) -> LeaseTable:
        """For reading only (`held`, `get`, `count_active`): a reader writes nothing."""

    def used_bytes(self) -> int:
        """As `Transaction.used_bytes`, read outside a unit of work (what the metrics show)."""
        ...

    @property
    def webhooks(self) -> WebhookTable: ...

    def snapshot(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


class TaskFinder(Protocol):
    """Which tasks match a filter: the read model lists, totals and lease decisions ask.

    It answers for the changes it was given through `apply`, in sequence order (an implementation
    that reads the database itself may ignore them). The rules feed it every committed change
    before deciding in a unit of work, so its answers then hold for that unit of work.
    """

    def reload(self, reader: Reader, *, fresh: bool = False) -> int:
        """Forgets what it was given and takes the stored tasks afresh; answers the sequence number it stands at.

        It may start from a state it saved (`checkpoint`) that fits the database, and stand at that
        state's sequence number: the caller then feeds it the changes since. `fresh`: never.
        """
        ...

    def prepare_checkpoint(self) -> None:
        """Work a `checkpoint` needs that may be done anywhere, ahead of it (the memory its copy goes into)."""
        ...

    def checkpoint(self, seq: int, epoch: str) -> Callable[[], None] | None:
        """Called where no change comes meanwhile: a copy of its state as of `seq` in `epoch`, and a way to
        save it to run elsewhere (None when it keeps nothing)."""
        ...

    @property
    def in_memory(self) -> bool:
        """Whether it answers from memory, in microseconds: then lists may ask it on the event loop."""
        ...

    def apply(self, changes: Changes) -> None: ...

    def page(self, query: TaskQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        """Up to `limit + 1` matching uids from `from_uid` (inclusive), newest first unless `reverse`, and the total."""
        ...

    def uids(self, query: TaskQuery, *, limit: int, after_uid: int | None = None, newest: bool = False) -> list[int]:
        """Up to `limit` matching uids, oldest first after `after_uid` (or the newest first)."""
        ...

    def count(self, query: TaskQuery) -> int: ...

    def index_uids(self, query: TaskQuery) -> set[str]:
        """The index uids of the matching tasks (tasks of no index add none)."""
        ...

    def next_run_at(self, now: int) -> int | None:
        """The earliest `runAt` after `now` of an enqueued task waiting for it; None when none waits.

        What a lease call waiting for work sleeps until. May be asked from any thread.
        """
        ...

    def finished_per_second(self, since: int, seconds: int, scope: Scope | None = None) -> dict[TaskStatus, list[int]]:
        """How many finished tasks (that `scope` sees) finished in each of the `seconds` seconds from `since`
        (microseconds, inclusive) on, by their status; a status none finished with is absent.

        The history an operator's chart starts from: asked of the finished dates, never of a log.
        """
        ...

    def counts_by_index(self, scope: Scope | None = None) -> dict[str | None, dict[TaskStatus, int]]:
        """How many tasks (that `scope` sees) each index holds, by status, None for the global tasks; only counts
        above zero, and only indexes holding a task."""
        ...

    def close(self) -> None:
        """Releases what it holds (connections); called once, at the end."""
        ...
