"""Typed results of the client: `Task`, `TaskSummary`, `TaskPage`, `TaskChange`, their enums, `ServerVersion`.

The sync and async clients turn every protobuf answer into these once, so
callers see Python values (aware datetimes, timedeltas, dicts with Meilisearch's
keys) and never protobuf. `to_dict()` renders Meilisearch's JSON shapes.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from taskhub import structs
from taskhub.errors import TaskHubError
from taskhub.v1 import task_pb2, task_service_pb2

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TaskStatus(enum.StrEnum):
    """Where a task is in its life; compares equal to its Meilisearch name."""

    ENQUEUED = "enqueued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        """True for the terminal statuses: succeeded, failed, canceled."""
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED)


class TaskType(enum.StrEnum):
    """What a task does; compares equal to its Meilisearch name, in Meilisearch's order."""

    INDEX_CREATION = "indexCreation"
    INDEX_UPDATE = "indexUpdate"
    INDEX_DELETION = "indexDeletion"
    INDEX_SWAP = "indexSwap"
    DOCUMENT_ADDITION_OR_UPDATE = "documentAdditionOrUpdate"
    DOCUMENT_DELETION = "documentDeletion"
    SETTINGS_UPDATE = "settingsUpdate"
    DUMP_CREATION = "dumpCreation"
    TASK_CANCELATION = "taskCancelation"
    TASK_DELETION = "taskDeletion"
    SNAPSHOT_CREATION = "snapshotCreation"


# Both enums mirror the protos by name (TASK_STATUS_ENQUEUED <-> ENQUEUED), so a
# value added to the protos without a Python member fails loudly at import.
STATUS_FROM_PROTO = {task_pb2.TaskStatus.Value("TASK_STATUS_" + s.name): s for s in TaskStatus}
TYPE_FROM_PROTO = {task_pb2.TaskType.Value("TASK_TYPE_" + t.name): t for t in TaskType}
STATUS_TO_PROTO = {s: v for v, s in STATUS_FROM_PROTO.items()}
TYPE_TO_PROTO = {t: v for v, t in TYPE_FROM_PROTO.items()}

# The `TaskDetails.kind` case of each type; snapshotCreation has none.
DETAILS_CASE = {t: t.name.lower() for t in TaskType if t != TaskType.SNAPSHOT_CREATION}

_TYPES_BY_LOWER = {t.value.lower(): t for t in TaskType}
_STATUSES_BY_LOWER = {s.value: s for s in TaskStatus}
TYPE_NAMES = ", ".join(f"`{t.value}`" for t in TaskType)
STATUS_NAMES = ", ".join(f"`{s.value}`" for s in TaskStatus)


def parse_type(value: TaskType | str, parameter: str = "type") -> TaskType | str:
    """A task type from its Meilisearch name, case-insensitively (as the HTTP API reads it); any other
    name as it is, for a type registered at the server (`sendEmail`), which answers for unknown ones."""
    found = _TYPES_BY_LOWER.get(str(value).lower())
    if found is None:
        if not isinstance(value, str) or not value:
            raise TaskHubError(
                "invalid_task_types",
                f"Invalid value in parameter `{parameter}`: `{value}` is not a valid"
                f" task type. Available types are {TYPE_NAMES}.",
            )
        return str(value)
    return found


def type_from_proto(message: task_pb2.Task | task_pb2.TaskSummary) -> TaskType | str:
    """A task's type: Meilisearch's as the enum, a registered one (`type` unspecified) by its name."""
    found = TYPE_FROM_PROTO.get(message.type)
    return message.type_name if found is None else found


def parse_status(value: TaskStatus | str, parameter: str = "statuses") -> TaskStatus:
    """A task status from its name, case-insensitively."""
    found = _STATUSES_BY_LOWER.get(str(value).lower())
    if found is None:
        raise TaskHubError(
            "invalid_task_statuses",
            f"Invalid value in parameter `{parameter}`: `{value}` is not a"
            f" valid task status. Available statuses are {STATUS_NAMES}.",
        )
    return found


# -- times ---------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with exactly six fractional digits and `Z`, as Meilisearch writes dates."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}Z"


def format_duration(duration: timedelta) -> str:
    """ISO 8601 as Meilisearch writes it: days and seconds, a fraction of 3, 6 or 9 digits."""
    micros = (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
    days, rest = divmod(micros, 86_400 * 1_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    text = "P" + (f"{days}D" if days else "")
    if rest or not days:
        if fraction == 0:
            text += f"T{seconds}S"
        elif fraction % 1_000 == 0:
            text += f"T{seconds}.{fraction // 1_000:03d}S"
        else:
            text += f"T{seconds}.{fraction:06d}S"
    return text


def _time(message, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    ts = getattr(message, name)
    # Microseconds are what the server stores; timedelta keeps them exactly.
    return EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1_000)


def _show(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


# -- details -------------------------------------------------------------


def details_from_proto(type_: TaskType | str, message: task_pb2.Task) -> dict | None:
    """The task's details with Meilisearch's keys in order; unset counters are None. A registered
    type's are its JSON object as given (key order, large integers)."""
    if not message.HasField("details"):
        return None
    case = message.details.WhichOneof("kind")
    if case is None:
        return None
    if case == "custom_json":
        return json.loads(message.details.custom_json)
    sub = getattr(message.details, case)
    if type_ == TaskType.SETTINGS_UPDATE:
        return structs.to_dict(sub.settings) if sub.HasField("settings") else {}
    out: dict = {}
    # Proto field order is Meilisearch's key order, so walking the descriptor keeps it.
    for field in sub.DESCRIPTOR.fields:
        if field.json_name == "swaps":
            out["swaps"] = [{"indexes": list(swap.indexes)} for swap in sub.swaps]
        else:
            out[field.json_name] = getattr(sub, field.name) if sub.HasField(field.name) else None
    return out


def details_to_proto(type_: TaskType | str, details: dict | None) -> task_pb2.TaskDetails | None:
    """Enqueue details given with Meilisearch's keys (or snake_case) as the proto `TaskDetails`; a
    registered type's any JSON object, carried as JSON text."""
    if details is None:
        return None
    if not isinstance(type_, TaskType):
        if not isinstance(details, dict):
            raise TaskHubError("invalid_task_details", "`details` must be an object or null.")
        return task_pb2.TaskDetails(custom_json=json.dumps(details, separators=(",", ":")))
    case = DETAILS_CASE.get(type_)
    if case is None:
        if details:
            raise TaskHubError("invalid_task_details", f"`{type_.value}` takes no details.")
        return None
    message = task_pb2.TaskDetails()
    sub = getattr(message, case)
    sub.SetInParent()
    if type_ == TaskType.SETTINGS_UPDATE:
        sub.settings.update(details)
        return message
    by_camel, by_snake = sub.DESCRIPTOR.fields_by_camelcase_name, sub.DESCRIPTOR.fields_by_name
    for key, value in details.items():
        field = by_camel.get(key) or by_snake.get(key)
        if field is None:
            known = ", ".join(f"`{f.json_name}`" for f in sub.DESCRIPTOR.fields)
            raise TaskHubError(
                "invalid_task_details", f"`{key}` is not a detail of a `{type_.value}` task; its details are {known}."
            )
        if value is None:
            continue
        if field.name == "swaps":
            for swap in value:
                sub.swaps.add(indexes=swap["indexes"] if isinstance(swap, dict) else swap)
        else:
            setattr(sub, field.name, value)
    return message


# -- results -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a task failed, in Meilisearch's shape."""

    message: str
    code: str
    type: str
    link: str

    def to_dict(self) -> dict[str, str]:
        return {"message": self.message, "code": self.code, "type": self.type, "link": self.link}


@dataclass(frozen=True, slots=True)
class Task:
    """One task with every field of Meilisearch's task object, as Python values."""

    uid: int
    index_uid: str | None
    status: TaskStatus
    type: TaskType | str  # a type registered at the server is its name
    canceled_by: int | None
    details: dict | None
    error: TaskError | None
    duration: timedelta | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # The batch that last processed it (GET /batches/{uid}); None before any did.
    batch_uid: int | None = None
    # Given at enqueue (`customMetadata`), else None.
    custom_metadata: str | None = None
    # Delayed runs and retries: not run before `run_at`; failed attempts so far, and the last one's error.
    run_at: datetime | None = None
    attempts: int | None = None
    last_error: TaskError | None = None
    # The task this one was requeued from (`requeue_tasks`), if any.
    requeued_from: int | None = None
    # The worker that holds it or last held it, if any.
    worker: str | None = None

    @property
    def finished(self) -> bool:
        """True once the task reached a terminal status."""
        return self.status.finished

    @classmethod
    def from_proto(cls, message: task_pb2.Task) -> Task:
        type_ = type_from_proto(message)
        duration = None
        if message.HasField("duration"):
            duration = timedelta(seconds=message.duration.seconds, microseconds=message.duration.nanos // 1_000)
        error = last_error = None
        if message.HasField("error"):
            e = message.error
            error = TaskError(message=e.message, code=e.code, type=e.type, link=e.link)
        if message.HasField("last_error"):
            e = message.last_error
            last_error = TaskError(message=e.message, code=e.code, type=e.type, link=e.link)
        return cls(
            uid=message.uid,
            index_uid=message.index_uid if message.HasField("index_uid") else None,
            status=STATUS_FROM_PROTO[message.status],
            type=type_,
            canceled_by=message.canceled_by if message.HasField("canceled_by") else None,
            details=details_from_proto(type_, message),
            error=error,
            duration=duration,
            enqueued_at=_time(message, "enqueued_at"),
            started_at=_time(message, "started_at"),
            finished_at=_time(message, "finished_at"),
            batch_uid=message.batch_uid if message.HasField("batch_uid") else None,
            custom_metadata=message.custom_metadata if message.HasField("custom_metadata") else None,
            requeued_from=message.requeued_from if message.HasField("requeued_from") else None,
            run_at=_time(message, "run_at"),
            attempts=message.attempts if message.HasField("attempts") else None,
            last_error=last_error,
            worker=message.worker if message.HasField("worker") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Meilisearch's task object, fields in Meilisearch's order; extra fields after, only when set."""
        body = {
            "uid": self.uid,
            "indexUid": self.index_uid,
            "status": self.status.value,
            "type": str(self.type),
            "canceledBy": self.canceled_by,
            "details": self.details,
            "error": None if self.error is None else self.error.to_dict(),
            "duration": None if self.duration is None else format_duration(self.duration),
            "enqueuedAt": _show(self.enqueued_at),
            "startedAt": _show(self.started_at),
            "finishedAt": _show(self.finished_at),
        }
        if self.batch_uid is not None:
            body["batchUid"] = self.batch_uid
        if self.custom_metadata is not None:
            body["customMetadata"] = self.custom_metadata
        if self.run_at is not None:
            body["runAt"] = _show(self.run_at)
        if self.attempts is not None:
            body["attempts"] = self.attempts
        if self.last_error is not None:
            body["lastError"] = self.last_error.to_dict()
        if self.requeued_from is not None:
            body["requeuedFrom"] = self.requeued_from
        if self.worker is not None:
            body["worker"] = self.worker
        return body


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """The answer to a request that enqueues: the new task in short."""

    task_uid: int
    index_uid: str | None
    status: TaskStatus
    type: TaskType | str  # a type registered at the server is its name
    enqueued_at: datetime

    @property
    def uid(self) -> int:
        """The new task's uid, named as on `Task`."""
        return self.task_uid

    @classmethod
    def from_proto(cls, message: task_pb2.TaskSummary) -> TaskSummary:
        return cls(
            task_uid=message.task_uid,
            index_uid=message.index_uid if message.HasField("index_uid") else None,
            status=STATUS_FROM_PROTO[message.status],
            type=type_from_proto(message),
            enqueued_at=_time(message, "enqueued_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Meilisearch's summarized task: `{taskUid, indexUid, status, type, enqueuedAt}`."""
        return {
            "taskUid": self.task_uid,
            "indexUid": self.index_uid,
            "status": self.status.value,
            "type": str(self.type),
            "enqueuedAt": _show(self.enqueued_at),
        }


@dataclass(frozen=True, slots=True)
class TaskChange:
    """One committed change from `watch_tasks`: the task's new state, or its last one when it was deleted."""

    sequence: int
    task: Task
    deleted: bool = False

    @classmethod
    def from_proto(cls, message: task_service_pb2.WatchTasksResponse) -> TaskChange:
        return cls(sequence=message.sequence, task=Task.from_proto(message.task), deleted=message.deleted)

    def to_dict(self) -> dict[str, Any]:
        """`{sequence, deleted, task}`, the task in Meilisearch's shape."""
        return {"sequence": self.sequence, "deleted": self.deleted, "task": self.task.to_dict()}


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of a listing; `next` is the `from_` of the next page, None on the last."""

    results: list[Task]
    total: int
    limit: int
    from_: int | None
    next: int | None

    @classmethod
    def from_proto(cls, message: task_service_pb2.ListTasksResponse) -> TaskPage:
        return cls(
            results=[Task.from_proto(t) for t in message.results],
            total=message.total,
            limit=message.limit,
            # `from` is a Python keyword, hence getattr.
            from_=getattr(message, "from") if message.HasField("from") else None,
            next=message.next if message.HasField("next") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Meilisearch's `GET /tasks` answer: `{results, total, limit, from, next}`."""
        return {
            "results": [t.to_dict() for t in self.results],
            "total": self.total,
            "limit": self.limit,
            "from": self.from_,
            "next": self.next,
        }


# What Meilisearch's `GET /version` answers for a build without git information.
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ServerVersion:
    """Which taskhub a server is: its package version and the git commit it runs from, None when unknown."""

    pkg_version: str | None
    commit_sha: str | None
    commit_date: datetime | None

    @classmethod
    def from_proto(cls, message: task_service_pb2.GetVersionResponse) -> ServerVersion:
        return cls(
            pkg_version=message.pkg_version if message.HasField("pkg_version") else None,
            commit_sha=message.commit_sha if message.HasField("commit_sha") else None,
            commit_date=_time(message, "commit_date"),
        )

    def to_dict(self) -> dict[str, str]:
        """Meilisearch's `GET /version` answer: `{commitSha, commitDate, pkgVersion}`, `"unknown"` for None."""
        return {
            "commitSha": self.commit_sha or UNKNOWN,
            "commitDate": _show(self.commit_date) or UNKNOWN,
            "pkgVersion": self.pkg_version or UNKNOWN,
        }
