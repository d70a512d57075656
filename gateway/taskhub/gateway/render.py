"""From taskhub.v1 protobuf messages to Meilisearch's JSON shapes.

The HTTP routes in `app` call these to build their bodies: plain dicts built in
the exact key order Meilisearch answers with (SPEC §2), dates with six
fractional digits, durations in ISO 8601 as Meilisearch writes them.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from taskhub.v1 import task_pb2, task_service_pb2


def _camel(name: str) -> str:
    head, *rest = name.lower().split("_")
    return head + "".join(word.capitalize() for word in rest)


# Labels by enum value, derived from the protos so the two never disagree.
STATUS_LABELS = {
    v.number: v.name.removeprefix("TASK_STATUS_").lower() for v in task_pb2.TaskStatus.DESCRIPTOR.values if v.number
}
TYPE_LABELS = {
    v.number: _camel(v.name.removeprefix("TASK_TYPE_")) for v in task_pb2.TaskType.DESCRIPTOR.values if v.number
}

# Per `TaskDetails.kind` case: (JSON key, proto field) in Meilisearch's order.
_DETAIL_FIELDS = {
    "document_addition_or_update": (
        ("receivedDocuments", "received_documents"),
        ("indexedDocuments", "indexed_documents"),
    ),
    "document_deletion": (
        ("providedIds", "provided_ids"),
        ("deletedDocuments", "deleted_documents"),
        ("originalFilter", "original_filter"),
    ),
    "index_creation": (("primaryKey", "primary_key"),),
    "index_update": (("primaryKey", "primary_key"),),
    "index_deletion": (("deletedDocuments", "deleted_documents"),),
    "dump_creation": (("dumpUid", "dump_uid"),),
    "task_cancelation": (
        ("matchedTasks", "matched_tasks"),
        ("canceledTasks", "canceled_tasks"),
        ("originalFilter", "original_filter"),
    ),
    "task_deletion": (
        ("matchedTasks", "matched_tasks"),
        ("deletedTasks", "deleted_tasks"),
        ("originalFilter", "original_filter"),
    ),
}

# A Struct is a protobuf map and loses key order on the wire; settings come
# back in the order Meilisearch serializes its `Settings` struct, unknown keys after.
SETTINGS_ORDER = (
    "displayedAttributes",
    "searchableAttributes",
    "filterableAttributes",
    "sortableAttributes",
    "foreignKeys",
    "rankingRules",
    "stopWords",
    "nonSeparatorTokens",
    "separatorTokens",
    "dictionary",
    "synonyms",
    "distinctAttribute",
    "proximityPrecision",
    "typoTolerance",
    "faceting",
    "pagination",
    "embedders",
    "searchCutoffMs",
    "localizedAttributes",
    "facetSearch",
    "prefixSearch",
    "chat",
    "vectorStore",
)
_SETTINGS_RANK = {key: i for i, key in enumerate(SETTINGS_ORDER)}


def date(ts: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 in UTC, always six fractional digits and `Z` (the Python SDK needs the fraction)."""
    moment = datetime.fromtimestamp(ts.seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.nanos // 1_000:06d}Z"


def duration(value: duration_pb2.Duration) -> str | None:
    """ISO 8601 as Meilisearch writes it: `PT1S`, `PT0.500S`, `PT0.006034S`, `P1DT2S`, `P1D`."""
    seconds, nanos = value.seconds, value.nanos
    if seconds < 0 or nanos < 0:
        return None  # not valid ISO 8601; Meilisearch answers null too
    days, seconds = divmod(seconds, 86_400)
    out = "P" + (f"{days}D" if days else "")
    if seconds or nanos or not days:
        if nanos == 0:
            fraction = ""
        elif nanos % 1_000_000 == 0:
            fraction = f".{nanos // 1_000_000:03d}"
        elif nanos % 1_000 == 0:
            fraction = f".{nanos // 1_000:06d}"
        else:
            fraction = f".{nanos:09d}"
        out += f"T{seconds}{fraction}S"
    return out


def _value(value: struct_pb2.Value):
    """One Struct value as JSON; by hand, as json_format raises on NaN a gRPC producer can store."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if math.isnan(number) or math.isinf(number):
            return None  # JSON cannot say these
        # Struct carries every number as a double; give back the integers producers sent.
        return int(number) if number.is_integer() else number
    if kind == "struct_value":
        return {k: _value(value.struct_value.fields[k]) for k in sorted(value.struct_value.fields)}
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None


def settings(struct: struct_pb2.Struct) -> dict:
    fields = struct.fields
    order = sorted(fields, key=lambda k: (_SETTINGS_RANK.get(k, len(_SETTINGS_RANK)), k))
    return {k: _value(fields[k]) for k in order}


def details(task: task_pb2.Task) -> dict | None:
    """The per-type details object; null for `snapshotCreation` or when the server sent none."""
    if not task.HasField("details"):
        return None
    case = task.details.WhichOneof("kind")
    if case is None:
        return None
    if case == "custom_json":  # a registered type's: the object as the producer gave it, key order and all
        return json.loads(task.details.custom_json)
    sub = getattr(task.details, case)
    if case == "settings_update":
        return settings(sub.settings)
    if case == "index_swap":
        return {"swaps": [{"indexes": list(swap.indexes)} for swap in sub.swaps]}
    return {key: (getattr(sub, field) if sub.HasField(field) else None) for key, field in _DETAIL_FIELDS[case]}


def error(task: task_pb2.Task) -> dict | None:
    if not task.HasField("error"):
        return None
    e = task.error
    return {"message": e.message, "code": e.code, "type": e.type, "link": e.link}


def type_name(message: task_pb2.Task | task_pb2.TaskSummary) -> str | None:
    """The type's name: `type_name` (set by the server for every type, registered ones included), else the enum's."""
    return message.type_name or TYPE_LABELS.get(message.type)


def task(message: task_pb2.Task) -> dict:
    """The fully qualified task object, keys in the order seed 004 fixes; extra fields after, only when set."""
    body = {
        "uid": message.uid,
        "indexUid": message.index_uid if message.HasField("index_uid") else None,
        "status": STATUS_LABELS.get(message.status),
        "type": type_name(message),
        "canceledBy": message.canceled_by if message.HasField("canceled_by") else None,
        "details": details(message),
        "error": error(message),
        "duration": duration(message.duration) if message.HasField("duration") else None,
        "enqueuedAt": date(message.enqueued_at),
        "startedAt": date(message.started_at) if message.HasField("started_at") else None,
        "finishedAt": date(message.finished_at) if message.HasField("finished_at") else None,
    }
    if message.HasField("batch_uid"):
        body["batchUid"] = message.batch_uid
    if message.HasField("custom_metadata"):
        body["customMetadata"] = message.custom_metadata
    # Delayed runs and retries (Task fields 15-17), in field order.
    if message.HasField("run_at"):
        body["runAt"] = date(message.run_at)
    if message.HasField("attempts"):
        body["attempts"] = message.attempts
    if message.HasField("last_error"):
        e = message.last_error
        body["lastError"] = {"message": e.message, "code": e.code, "type": e.type, "link": e.link}
    if message.HasField("requeued_from"):
        body["requeuedFrom"] = message.requeued_from
    if message.HasField("worker"):
        body["worker"] = message.worker
    return body


def summary(message: task_pb2.TaskSummary) -> dict:
    """The summarized task of a 202 answer: exactly these five keys, in this order."""
    return {
        "taskUid": message.task_uid,
        "indexUid": message.index_uid if message.HasField("index_uid") else None,
        "status": STATUS_LABELS.get(message.status),
        "type": type_name(message),
        "enqueuedAt": date(message.enqueued_at),
    }


# What Meilisearch answers for a build without git information.
UNKNOWN = "unknown"


def version(message: task_service_pb2.GetVersionResponse) -> dict:
    """`GET /version`: `{commitSha, commitDate, pkgVersion}`, each `"unknown"` when the server does not know it."""
    return {
        "commitSha": message.commit_sha if message.HasField("commit_sha") else UNKNOWN,
        "commitDate": date(message.commit_date) if message.HasField("commit_date") else UNKNOWN,
        "pkgVersion": message.pkg_version if message.HasField("pkg_version") else UNKNOWN,
    }


def page(message: task_service_pb2.ListTasksResponse) -> dict:
    """`GET /tasks`: `{results, total, limit, from, next}`."""
    return {
        "results": [task(t) for t in message.results],
        "total": message.total,
        "limit": message.limit,
        # `from` is a Python keyword, hence getattr.
        "from": getattr(message, "from") if message.HasField("from") else None,
        "next": message.next if message.HasField("next") else None,
    }
