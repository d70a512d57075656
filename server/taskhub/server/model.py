"""The domain of taskhub: statuses, types, the task, and the query over tasks.

Plain Python objects shared by the store and the scheduler; no protobuf and
no SQL here. Times are integers in microseconds since the Unix epoch (UTC),
which keeps every comparison exact and every rendering six digits long.
"""

from __future__ import annotations

import enum
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime


class TaskStatus(enum.IntEnum):
    """Where a task is in its life; values match the proto enum."""

    ENQUEUED = 1
    PROCESSING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELED = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def finished(self) -> bool:
        return self >= TaskStatus.SUCCEEDED


class TaskType(enum.IntEnum):
    """What a task does; values match the proto enum and Meilisearch's order."""

    INDEX_CREATION = 1
    INDEX_UPDATE = 2
    INDEX_DELETION = 3
    INDEX_SWAP = 4
    DOCUMENT_ADDITION_OR_UPDATE = 5
    DOCUMENT_DELETION = 6
    SETTINGS_UPDATE = 7
    DUMP_CREATION = 8
    TASK_CANCELATION = 9
    TASK_DELETION = 10
    SNAPSHOT_CREATION = 11

    @property
    def label(self) -> str:
        head, *rest = self.name.lower().split("_")
        return head + "".join(word.capitalize() for word in rest)

    @property
    def is_global(self) -> bool:
        """Global tasks have no `indexUid`."""
        return self in GLOBAL_TYPES

    @property
    def server_run(self) -> bool:
        """The server executes these itself; workers execute the rest."""
        return self in SERVER_PRIORITY


class CustomType(int):
    """A type registered at the server (`sendEmail`): its stored code, an int as Meilisearch's are, and its name.

    An int so that it keys the index's maps, sorts and stores as Meilisearch's types do (a code
    equals and hashes as the int). Never global, never run by the server; its details are any object.
    """

    label: str
    is_global = False
    server_run = False

    def __new__(cls, code: int, label: str) -> CustomType:
        self = super().__new__(cls, code)
        self.label = label
        return self

    @property
    def name(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"CustomType({int(self)}, {self.label!r})"

    def __reduce__(self) -> tuple[type[CustomType], tuple[int, str]]:
        return CustomType, (int(self), self.label)


# Any task type: one of Meilisearch's or one registered at the server.
TaskKind = TaskType | CustomType

GLOBAL_TYPES = frozenset(
    {
        TaskType.INDEX_SWAP,
        TaskType.TASK_CANCELATION,
        TaskType.TASK_DELETION,
        TaskType.DUMP_CREATION,
        TaskType.SNAPSHOT_CREATION,
    }
)

# Each status and type by its stored number: a dict lookup costs a fraction of calling the
# enum, and rows and index changes turn numbers back into them once per task.
STATUS_OF = {int(s): s for s in TaskStatus}
TYPE_OF = {int(t): t for t in TaskType}

# Server-run types, highest priority first; all of them outrank worker tasks.
SERVER_PRIORITY = (
    TaskType.TASK_CANCELATION,
    TaskType.TASK_DELETION,
    TaskType.SNAPSHOT_CREATION,
    TaskType.DUMP_CREATION,
)

# Consecutive tasks of one index with the same group run as one batch; types
# without a group (creation, update, deletion, swap) always run alone. A registered
# type is its own group (`batch_group`).
BATCH_GROUPS = {
    TaskType.DOCUMENT_ADDITION_OR_UPDATE: "documents",
    TaskType.DOCUMENT_DELETION: "documents",
    TaskType.SETTINGS_UPDATE: "settings",
}


def batch_group(type_: TaskKind) -> object:
    """The batch group of a type: Meilisearch's by `BATCH_GROUPS`, a registered type its own."""
    return type_ if isinstance(type_, CustomType) else BATCH_GROUPS.get(type_)


STATUS_BY_LABEL = {s.label: s for s in TaskStatus}
TYPE_BY_LABEL = {t.label: t for t in TaskType}

# Detail counters that stay null until the task finishes, and become 0 when it
# fails or is canceled (Meilisearch's `to_failed`).
OUTPUT_COUNTERS = ("indexedDocuments", "deletedDocuments", "canceledTasks", "deletedTasks")


@dataclass(slots=True)
class Task:
    """One task as stored; `details` and `error` use Meilisearch's JSON keys."""

    uid: int
    index_uid: str | None
    status: TaskStatus
    type: TaskKind
    enqueued_at: int
    details: dict | None = None
    error: dict | None = None
    canceled_by: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    # The global change sequence of this task's last committed change.
    seq: int = 0
    # Fields beyond Meilisearch's eleven (camelCase keys, JSON values), each present only when
    # set: the edges render them after `finishedAt`, so a task without any keeps Meilisearch's shape.
    extra: dict | None = None

    @property
    def duration(self) -> int | None:
        """Microseconds spent processing, once finished after having started."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class Scope:
    """The indexes an API key may see: exact names and `prefix*` patterns. Never global tasks."""

    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def allows(self, index_uid: str | None) -> bool:
        return index_uid is not None and (
            index_uid in self.names or any(index_uid.startswith(p) for p in self.prefixes)
        )


@dataclass(slots=True)
class TaskQuery:
    """A filter over tasks; `None` matches everything, an empty set matches nothing.

    Date bounds are exclusive microsecond timestamps; a task whose date is
    null never matches a bound on it.
    """

    uids: frozenset[int] | None = None
    index_uids: frozenset[str] | None = None
    statuses: frozenset[TaskStatus] | None = None
    types: frozenset[TaskKind] | None = None
    canceled_by: frozenset[int] | None = None
    before_enqueued_at: int | None = None
    after_enqueued_at: int | None = None
    before_started_at: int | None = None
    after_started_at: int | None = None
    before_finished_at: int | None = None
    after_finished_at: int | None = None
    # Only tasks with a smaller uid; how cancel and delete exclude themselves.
    below_uid: int | None = None
    # Not the tasks of these indexes (tasks of no index stay): how a lease skips indexes already busy.
    not_index_uids: frozenset[str] | None = None
    # Only tasks due at this time: none enqueued with a `runAt` after it (how a lease skips delayed tasks).
    due_at: int | None = None
    # Auth scoping: the indexes a key may see (None: all, global tasks included).
    scope: Scope | None = field(default=None, compare=False)
    # The tasks these batches held: the rules turn it into `uids` (rules/batches.py) before a finder reads
    # the query, which keeps it for `is_empty` and `originalFilter` alone.
    batch_uids: frozenset[int] | None = None

    DATE_FIELDS = (
        "before_enqueued_at",
        "after_enqueued_at",
        "before_started_at",
        "after_started_at",
        "before_finished_at",
        "after_finished_at",
    )

    def is_empty(self) -> bool:
        """True when no filter is set: what cancel and delete refuse."""
        return all(
            getattr(self, name) is None
            for name in ("uids", "batch_uids", "index_uids", "statuses", "types", "canceled_by", *self.DATE_FIELDS)
        )

    def matches(self, task: Task) -> bool:
        """The store's WHERE clause, in Python: for filtering watched changes."""
        if self.scope is not None and not self.scope.allows(task.index_uid):
            return False
        for values, value in (
            (self.uids, task.uid),
            (self.index_uids, task.index_uid),
            (self.statuses, task.status),
            (self.types, task.type),
            (self.canceled_by, task.canceled_by),
        ):
            if values is not None and value not in values:
                return False
        for name in self.DATE_FIELDS:
            bound = getattr(self, name)
            if bound is None:
                continue
            side, column = name.split("_", 1)
            value = getattr(task, column)
            if value is None or (value >= bound if side == "before" else value <= bound):
                return False
        if self.not_index_uids is not None and task.index_uid in self.not_index_uids:
            return False
        if self.due_at is not None and task.status == TaskStatus.ENQUEUED and task.extra:
            run_at = task.extra.get("runAt")
            if run_at is not None and run_at > self.due_at:
                return False
        return self.below_uid is None or task.uid < self.below_uid

    def query_string(self) -> str:
        """The equivalent Meilisearch query string, `?`-prefixed (for `originalFilter`)."""
        pairs: list[tuple[str, str]] = []
        for name, values, show in (
            ("uids", self.uids, str),
            ("batchUids", self.batch_uids, str),
            ("indexUids", self.index_uids, str),
            ("statuses", self.statuses, lambda s: s.label),
            ("types", self.types, lambda t: t.label),
            ("canceledBy", self.canceled_by, str),
        ):
            if values is not None:
                pairs.append((name, ",".join(show(v) for v in sorted(values))))
        for name in self.DATE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                head, *rest = name.split("_")
                pairs.append((head + "".join(w.capitalize() for w in rest), format_time(value)))
        return "?" + urllib.parse.urlencode(pairs)


def format_time(micros: int) -> str:
    """RFC 3339 in UTC with exactly six fractional digits and `Z`."""
    moment = datetime.fromtimestamp(micros // 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros % 1_000_000:06d}Z"


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def finished_details(type_: TaskKind, details: dict | None, *, success: bool) -> dict | None:
    """Details on a failed or canceled task: null output counters become 0 (Meilisearch's types only: a
    registered type's details are its producer's and worker's, kept as given)."""
    if details is None or success or isinstance(type_, CustomType):
        return details
    return {k: (0 if k in OUTPUT_COUNTERS and v is None else v) for k, v in details.items()}


def task_indexes(index_uid: str | None, type_: TaskKind, details: dict | None) -> frozenset[str]:
    """The indexes a task holds while it runs: its own, or both sides of every swap."""
    if type_ == TaskType.INDEX_SWAP:
        return frozenset(i for swap in (details or {}).get("swaps", []) for i in swap.get("indexes", []))
    return frozenset() if index_uid is None else frozenset({index_uid})


@dataclass(slots=True)
class KeyRecord:
    """An API key as stored: everything but the secret."""

    uid: str
    name: str | None
    description: str | None
    actions: list[str]
    indexes: list[str]
    expires_at: int | None
    created_at: int
    updated_at: int
