"""Between protobuf messages and domain objects; the only module that knows both.

The servicers call these on the way in (checking what a request may contain and
raising `TaskHubError` with the public code) and on the way out.
"""

from __future__ import annotations

import json
import math
from typing import cast

from google.protobuf import duration_pb2, timestamp_pb2

from taskhub import structs
from taskhub.errors import TaskHubError
from taskhub.server.model import CustomType, KeyRecord, Task, TaskKind, TaskQuery, TaskStatus, TaskType
from taskhub.server.rules import retries
from taskhub.server.rules.details import INDEX_UID_RULE, valid_index_uid
from taskhub.server.rules.scheduler import Page
from taskhub.server.task_types import TaskTypes
from taskhub.server.version import BuildInfo
from taskhub.v1 import errors_pb2, key_service_pb2, task_pb2, task_service_pb2, worker_service_pb2

# The `TaskDetails.kind` case for each task type.
DETAILS_CASE = {
    TaskType.DOCUMENT_ADDITION_OR_UPDATE: "document_addition_or_update",
    TaskType.DOCUMENT_DELETION: "document_deletion",
    TaskType.INDEX_CREATION: "index_creation",
    TaskType.INDEX_UPDATE: "index_update",
    TaskType.INDEX_DELETION: "index_deletion",
    TaskType.INDEX_SWAP: "index_swap",
    TaskType.SETTINGS_UPDATE: "settings_update",
    TaskType.DUMP_CREATION: "dump_creation",
    TaskType.TASK_CANCELATION: "task_cancelation",
    TaskType.TASK_DELETION: "task_deletion",
}

CASE_TYPE = {case: type_ for type_, case in DETAILS_CASE.items()}

STATUS_NAMES = "`enqueued`, `processing`, `succeeded`, `failed`, `canceled`"
# Meilisearch's types by name, computed once: `TaskType.label` builds its string on each call.
_LABELS: dict[TaskKind, str] = {t: t.label for t in TaskType}
# Types when none are registered (tests and tools that convert without a server's).
MEILISEARCH_TYPES = TaskTypes()
# The JSON text of a registered type's details: compact; ASCII, so any text (a lone surrogate too) travels.
_compact = json.JSONEncoder(separators=(",", ":")).encode


# -- times ---------------------------------------------------------------


def timestamp(micros: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1_000)


def micros(ts: timestamp_pb2.Timestamp, *, round_up: bool = False) -> int:
    whole, rest = divmod(ts.nanos, 1_000)
    return ts.seconds * 1_000_000 + whole + (1 if round_up and rest else 0)


# google.protobuf.Timestamp's own range, years 1..9999 (every stored date renders in RFC 3339),
# and Duration's, about 10,000 years either way.
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799
MAX_DURATION_SECONDS = 315_576_000_000
NANOS = 1_000_000_000
DATE_RANGE = "0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z"


def checked_micros(ts: timestamp_pb2.Timestamp, code: str, where: str, *, round_up: bool = False) -> int:
    """`micros` of a Timestamp from outside; out of years 1..9999 it is refused with `code`.

    `where` names the value in the message: "in parameter `beforeEnqueuedAt`", "at `.expiresAt`".
    """
    if not MIN_SECONDS <= ts.seconds <= MAX_SECONDS or not 0 <= ts.nanos < NANOS:
        raise TaskHubError(
            code,
            f"Invalid value {where}: `{ts.seconds}s {ts.nanos}ns` is out of range. A date"
            f" must lie between {DATE_RANGE}.",
        )
    return micros(ts, round_up=round_up)


def checked_duration(value: duration_pb2.Duration, code: str, parameter: str, *, zero: bool) -> int:
    """Microseconds of a Duration from outside (nanoseconds rounded down); refused with `code` when
    it is no valid Duration, negative, or zero unless `zero` allows it."""
    seconds, nanos = value.seconds, value.nanos
    if (
        abs(seconds) > MAX_DURATION_SECONDS
        or abs(nanos) >= NANOS
        or (seconds > 0 and nanos < 0)
        or (seconds < 0 and nanos > 0)
    ):
        raise TaskHubError(
            code,
            f"Invalid value in parameter `{parameter}`: `{seconds}s {nanos}ns` is not a valid"
            " duration: seconds and nanos share one sign, nanos stay under a second and"
            f" seconds within {MAX_DURATION_SECONDS}.",
        )
    if seconds < 0 or nanos < 0 or (not zero and seconds == nanos == 0):
        wanted = "zero or positive" if zero else "positive"
        raise TaskHubError(code, f"Invalid value in parameter `{parameter}`: `{seconds}s {nanos}ns` must be {wanted}.")
    return seconds * 1_000_000 + nanos // 1_000


# -- out -----------------------------------------------------------------


def _set_time(message: timestamp_pb2.Timestamp, at: int) -> None:
    message.seconds, rest = divmod(at, 1_000_000)
    message.nanos = rest * 1_000


def fill_task(message: task_pb2.Task, task: Task) -> None:
    """Writes `task` into an empty message in place, such as a response's field or a repeated field's `add()`.

    In place because every read answers with tasks: building a Task and then copying
    it into its response does every field's work twice, timestamps made apart and copied in too.
    """
    # The domain enums carry the proto's numbers, which the fields take; the stubs type them as the proto's own
    # enums, and cast() here would cost two calls per task answered.
    message.uid, message.status = task.uid, task.status  # type: ignore[assignment]
    type_ = task.type
    label = _LABELS.get(type_)
    if label is None:  # a registered type: `type` stays unspecified, old clients see an unknown type
        label = type_.label
    else:
        message.type = type_  # type: ignore[assignment]
    message.type_name = label
    _set_time(message.enqueued_at, task.enqueued_at)
    if task.index_uid is not None:
        message.index_uid = task.index_uid
    if task.canceled_by is not None:
        message.canceled_by = task.canceled_by
    if task.details is not None:
        if isinstance(type_, CustomType):
            message.details.custom_json = _compact(task.details)
        else:
            fill_details(message.details, type_, task.details)
    if task.error is not None:
        message.error.CopyFrom(errors_pb2.TaskError(**task.error))
    if task.started_at is not None:
        _set_time(message.started_at, task.started_at)
    if task.finished_at is not None:
        _set_time(message.finished_at, task.finished_at)
    if task.extra is not None and (batch_uid := task.extra.get("batchUid")) is not None:
        message.batch_uid = batch_uid
    duration = task.duration
    if duration is not None:
        # A Duration's seconds and nanos share one sign (a clock set back can make it negative).
        seconds, rest = divmod(abs(duration), 1_000_000)
        sign = -1 if duration < 0 else 1
        message.duration.seconds, message.duration.nanos = sign * seconds, sign * rest * 1_000
    extra = task.extra
    if extra is not None:
        metadata = extra.get("customMetadata")
        if metadata is not None:
            message.custom_metadata = metadata
        fill_later(message, extra)
    if task.extra is not None and "requeuedFrom" in task.extra:
        message.requeued_from = task.extra["requeuedFrom"]
    if task.extra is not None and "worker" in task.extra:
        message.worker = task.extra["worker"]


def fill_later(message: task_pb2.Task, extra: dict) -> None:
    """The extra fields of delayed runs and retries: `runAt`, `attempts`, `lastError`."""
    run_at = extra.get("runAt")
    if run_at is not None:
        _set_time(message.run_at, run_at)
    attempts = extra.get("attempts")
    if attempts is not None:
        message.attempts = attempts
    last_error = extra.get("lastError")
    if last_error is not None:
        message.last_error.CopyFrom(errors_pb2.TaskError(**last_error))


def version_to_proto(info: BuildInfo) -> task_service_pb2.GetVersionResponse:
    """What is unknown stays unset; the gateway answers it as Meilisearch does, `"unknown"`."""
    message = task_service_pb2.GetVersionResponse()
    if info.commit_sha is not None:
        message.commit_sha = info.commit_sha
    if info.commit_time is not None:
        message.commit_date.CopyFrom(timestamp(info.commit_time))
    if info.package_version is not None:
        message.pkg_version = info.package_version
    return message


def summary_to_proto(task: Task) -> task_pb2.TaskSummary:
    # The domain enums carry the proto's numbers; the stubs know only the proto's own enum types.
    custom = isinstance(task.type, CustomType)
    message = task_pb2.TaskSummary(
        task_uid=task.uid,
        status=cast(task_pb2.TaskStatus, task.status),
        type=cast(task_pb2.TaskType, 0 if custom else task.type),
        enqueued_at=timestamp(task.enqueued_at),
        type_name=task.type.label,
    )
    if task.index_uid is not None:
        message.index_uid = task.index_uid
    return message


def page_to_proto(page: Page) -> task_service_pb2.ListTasksResponse:
    message = task_service_pb2.ListTasksResponse(total=page.total, limit=page.limit)
    for task in page.results:
        fill_task(message.results.add(), task)
    # `from` is a Python keyword, hence setattr.
    if page.from_uid is not None:
        setattr(message, "from", page.from_uid)
    if page.next_uid is not None:
        message.next = page.next_uid
    return message


def _fields_by_camel_case(case: str) -> dict[str, str]:
    message_type = task_pb2.TaskDetails.DESCRIPTOR.fields_by_name[case].message_type
    assert message_type is not None  # every details case is a message field
    return {key: field.name for key, field in message_type.fields_by_camelcase_name.items()}


# Per details case, each of its fields' names by the camelCase key Meilisearch gives it.
_FIELDS = {case: _fields_by_camel_case(case) for case in DETAILS_CASE.values()}


def fill_details(message: task_pb2.TaskDetails, type_: TaskType, details: dict) -> None:
    """Writes a task's details into an empty `TaskDetails` in place, under its type's case."""
    case = DETAILS_CASE[type_]
    sub = getattr(message, case)
    if type_ == TaskType.SETTINGS_UPDATE:
        sub.settings.update(details)
        return
    sub.SetInParent()
    fields = _FIELDS[case]
    for key, value in details.items():
        name = fields.get(key)
        if value is None or name is None:
            continue
        if key == "swaps":
            for swap in value:
                sub.swaps.add(indexes=swap["indexes"])
        else:
            setattr(sub, name, value)


# -- in ------------------------------------------------------------------


def details_from_proto(type_: TaskKind, message: task_pb2.TaskDetails, given: bool) -> dict | None:
    """The details a producer sent, as a dict of the fields it set (Meilisearch's keys)."""
    if not given:
        return None
    case_type, details = reported_details(message, "invalid_task_details")
    case = message.WhichOneof("kind")
    if (case is not None and (case == "custom_json") != isinstance(type_, CustomType)) or case_type not in (
        None,
        type_,
    ):
        raise TaskHubError("invalid_task_details", f"`details.{case}` does not belong to a `{type_.label}` task.")
    return details


def reported_details(
    message: task_pb2.TaskDetails, code: str = "invalid_task_outcome"
) -> tuple[TaskType | None, dict | None]:
    """The type a details message is for, and the fields it sets; (None, None) when empty.

    A registered type's details (`custom_json`) say no type: (None, the object).
    """
    case = message.WhichOneof("kind")
    if case is None:
        return None, None
    if case == "custom_json":
        return None, json_object(message.custom_json, code)
    type_ = CASE_TYPE[case]
    sub = getattr(message, case)
    if type_ == TaskType.SETTINGS_UPDATE:
        if not sub.HasField("settings"):
            return type_, {}
        try:
            return type_, structs.to_dict(sub.settings)
        except ValueError as exc:  # NaN and infinities have no JSON form
            raise TaskHubError("invalid_task_details", f"The settings cannot be stored as JSON: {exc}.") from None
    out: dict = {}
    for field, value in sub.ListFields():
        if field.json_name == "swaps":
            out["swaps"] = [{"indexes": list(swap.indexes)} for swap in value]
        else:
            out[field.json_name] = value
    return type_, out


def retry_from_proto(message: worker_service_pb2.TaskOutcome) -> tuple[bool, int | None]:
    """Whether an outcome's failure is retryable, and the wait it asks before the next attempt."""
    if not message.retryable:
        return False, None
    if not message.HasField("retry_after"):
        return True, None
    return True, checked_duration(message.retry_after, "invalid_task_outcome", "retryAfter", zero=True)


def later_from_proto(message: task_service_pb2.EnqueueTaskRequest) -> tuple[int | None, dict | None]:
    """An enqueue's `runAt` (microseconds) and its own retry policy fields, checked for their form."""
    run_at = None
    if message.HasField("run_at"):
        run_at = checked_micros(message.run_at, "invalid_task_run_at", "in parameter `runAt`")
    retry: dict | None = None
    if message.HasField("retry"):
        policy = message.retry
        retry = {}
        if policy.HasField("attempts"):
            retry["attempts"] = policy.attempts
        for name, key in (("initial_delay", "initialDelay"), ("max_delay", "maxDelay")):
            if policy.HasField(name):
                retry[key] = checked_duration(
                    getattr(policy, name), "invalid_task_retry_policy", f"retry.{key}", zero=True
                )
        for name in ("multiplier", "jitter"):
            if policy.HasField(name):
                retry[name] = getattr(policy, name)
        retry = retries.checked_override(retry) or None
    return run_at, retry


def _no_constant(name: str) -> float:
    raise ValueError(f"`{name}` is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"`{text}` is past the largest number JSON details may hold")
    return value


def json_object(text: str, code: str) -> dict:
    """A registered type's details: one JSON object, keys in their order, integers of any size kept."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise TaskHubError(code, f"`details.customJson` is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise TaskHubError(code, "`details.customJson` must be a JSON object.")
    return value


def outcome_from_proto(message: worker_service_pb2.TaskOutcome) -> tuple[TaskKind | None, dict | None, dict | None]:
    """(reported type, reported details, error) of one task's outcome."""
    type_, details = reported_details(message.details)
    error = None
    if message.HasField("error"):
        error = {
            "message": message.error.message,
            "code": message.error.code,
            "type": message.error.type,
            "link": message.error.link,
        }
    return type_, details, error


def task_type(value: int, name: str | None = None, types: TaskTypes = MEILISEARCH_TYPES) -> TaskKind:
    """The type an enqueue names: by `type_name` if given (Meilisearch's or a registered one), else by `type`."""
    if name is not None:
        found = types.enqueueable(name)
        if found is None:
            raise TaskHubError(
                "invalid_task_types",
                f"Invalid value in parameter `type`: `{name}` is not a valid task type."
                f" Available types are {types.listing()}.",
            )
        if value and value != found:
            raise TaskHubError(
                "invalid_task_types",
                f"`type` `{_enum_name(task_pb2.TaskType, value)}` and `type_name` `{name}` name two types; give one.",
            )
        return found
    try:
        return TaskType(value)
    except ValueError:
        raise TaskHubError(
            "invalid_task_types",
            f"Invalid value in parameter `type`: `{_enum_name(task_pb2.TaskType, value)}` is not a valid task type."
            f" Available types are {types.listing()}.",
        ) from None


def _enum_name(enum, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


def _located(parameter: str, position: int, count: int) -> str:
    return f"{parameter}[{position}]" if count > 1 else parameter


def query_from_proto(message: task_pb2.TaskFilter, types: TaskTypes = MEILISEARCH_TYPES) -> TaskQuery:
    """Checks a filter and answers the domain query; an unset field matches everything."""
    query = TaskQuery()
    if message.HasField("uids"):
        query.uids = frozenset(message.uids.uids)
    if message.HasField("canceled_by"):
        query.canceled_by = frozenset(message.canceled_by.uids)
    if message.HasField("batch_uids"):
        query.batch_uids = frozenset(message.batch_uids.uids)
    if message.HasField("index_uids"):
        names = list(message.index_uids.index_uids)
        for i, name in enumerate(names):
            if not valid_index_uid(name):
                raise TaskHubError(
                    "invalid_task_index_uids",
                    f"Invalid value in parameter `{_located('indexUids', i, len(names))}`: `{name}` is not a valid"
                    f" index uid. {INDEX_UID_RULE}",
                )
        query.index_uids = frozenset(names)
    if message.HasField("statuses"):
        values: list[int] = list(message.statuses.statuses)
        statuses = set()
        for i, value in enumerate(values):
            try:
                statuses.add(TaskStatus(value))
            except ValueError:
                raise TaskHubError(
                    "invalid_task_statuses",
                    f"Invalid value in parameter `{_located('statuses', i, len(values))}`:"
                    f" `{_enum_name(task_pb2.TaskStatus, value)}` is not a valid task status."
                    f" Available statuses are {STATUS_NAMES}.",
                ) from None
        query.statuses = frozenset(statuses)
    if message.HasField("types"):
        query.types = _types_from_proto(message.types, types)
    for name in TaskQuery.DATE_FIELDS:
        if message.HasField(name):
            # Bounds are exclusive: round so sub-microsecond parts never widen them.
            setattr(
                query,
                name,
                checked_micros(
                    getattr(message, name),
                    f"invalid_task_{name}",
                    f"in parameter `{_DATE_PARAMETERS[name]}`",
                    round_up=name.startswith("before"),
                ),
            )
    return query


def _types_from_proto(message: task_pb2.TypeSet, types: TaskTypes) -> frozenset[TaskKind] | None:
    """The types of a filter, by enum and by name; a name `*` among them matches every type (as `types=*`)."""
    found: set[TaskKind] = set()
    values: list[int] = list(message.types)
    for i, value in enumerate(values):
        try:
            found.add(TaskType(value))
        except ValueError:
            raise TaskHubError(
                "invalid_task_types",
                f"Invalid value in parameter `{_located('types', i, len(values))}`:"
                f" `{_enum_name(task_pb2.TaskType, value)}` is not a valid task type."
                f" Available types are {types.listing()}.",
            ) from None
    names = list(message.type_names)
    star = False
    for i, name in enumerate(names):
        if name == "*":
            star = True
            continue
        kind = types.named(name)
        if kind is None:
            raise TaskHubError(
                "invalid_task_types",
                f"Invalid value in parameter `{_located('types', i, len(names))}`: `{name}` is not a valid task type."
                f" Available types are {types.listing()}.",
            )
        found.add(kind)
    return None if star else frozenset(found)


_DATE_PARAMETERS = {
    name: task_pb2.TaskFilter.DESCRIPTOR.fields_by_name[name].json_name for name in TaskQuery.DATE_FIELDS
}


def key_to_proto(record: KeyRecord, secret: str) -> key_service_pb2.ApiKey:
    message = key_service_pb2.ApiKey(
        uid=record.uid,
        key=secret,
        actions=record.actions,
        indexes=record.indexes,
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
    )
    if record.name is not None:
        message.name = record.name
    if record.description is not None:
        message.description = record.description
    if record.expires_at is not None:
        # Within years 1..9999 even for a key stored before its date was range-checked: it must render.
        last = MAX_SECONDS * 1_000_000 + 999_999
        message.expires_at.CopyFrom(timestamp(min(max(record.expires_at, MIN_SECONDS * 1_000_000), last)))
    return message


def expires_at(request: key_service_pb2.CreateKeyRequest) -> int | None:
    """A new key's `expires_at` in microseconds, None for never; refused out of years 1..9999."""
    if not request.HasField("expires_at"):
        return None
    return checked_micros(request.expires_at, "invalid_api_key_expires_at", "at `.expiresAt`")
