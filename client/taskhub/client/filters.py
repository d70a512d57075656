"""`TaskFilter`: which tasks a list, cancel or delete applies to, given as Python values.

The clients call `to_proto()` on the way out. Values follow Meilisearch's
rules: `None` means no filter, an empty list matches nothing, `"*"` matches
everything, statuses and types are case-insensitive, a bare date means
midnight UTC (of the next day for `after_*` bounds), and every bound is exclusive.
Bad values raise `TaskHubError` with the code and message the HTTP API uses.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2

from taskhub.client.models import STATUS_TO_PROTO, TYPE_TO_PROTO, TaskStatus, TaskType, parse_status, parse_type
from taskhub.dates import parse_bound
from taskhub.errors import TaskHubError
from taskhub.v1 import task_pb2

Values = Iterable[Any] | Any | None
DateBound = datetime | date | str | None

_MAX_UID = 2**32 - 1
LIST_FIELDS = ("uids", "index_uids", "statuses", "types", "canceled_by")
DATE_FIELDS = (
    "before_enqueued_at",
    "after_enqueued_at",
    "before_started_at",
    "after_started_at",
    "before_finished_at",
    "after_finished_at",
)


def camel(name: str) -> str:
    """`before_enqueued_at` -> `beforeEnqueuedAt`, the HTTP parameter name used in messages."""
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def split_list(text: str) -> list[str]:
    """A comma list as the HTTP API reads one: segments trimmed, empty ones dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _as_list(value: Values) -> list | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes, int)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _uids(values: list, name: str) -> list[int]:
    out = []
    for i, value in enumerate(values):
        text = str(value)
        ok = not isinstance(value, bool) and (isinstance(value, int) or (text.isascii() and text.isdigit()))
        if not ok or not 0 <= int(text) <= _MAX_UID:
            where = _located(name, i, len(values))
            code = "invalid_task_uids" if name == "uids" else "invalid_task_canceled_by"
            raise TaskHubError(
                code, f"Invalid value in parameter `{where}`: could not parse `{value}` as a positive integer"
            )
        out.append(int(text))
    return out


def _located(name: str, i: int, count: int) -> str:
    return f"{camel(name)}[{i}]" if count > 1 else camel(name)


def timestamp(value: DateBound, name: str) -> timestamp_pb2.Timestamp:
    """One date bound as a Timestamp; bare dates move to the next midnight for `after_*` bounds."""
    after = name.startswith("after")
    if isinstance(value, datetime):
        # Naive datetimes are taken as UTC, the server's only zone.
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return timestamp_pb2.Timestamp(seconds=calendar.timegm(moment.utctimetuple()), nanos=moment.microsecond * 1_000)
    if isinstance(value, date):
        day = value + timedelta(days=1) if after else value
        return timestamp_pb2.Timestamp(seconds=calendar.timegm(day.timetuple()))
    text = str(value)
    try:
        seconds, nanos = parse_bound(text, after=after)
    except ValueError:
        raise TaskHubError(
            f"invalid_task_{name}",
            f"Invalid value in parameter `{camel(name)}`: `{text}` is an"
            " invalid date-time. It should follow the YYYY-MM-DD or RFC 3339"
            " date-time format.",
        ) from None
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks to list, cancel or delete; AND across fields, OR inside a list.

    `TaskFilter(statuses=["enqueued", "processing"], index_uids="movies")`;
    dates take an aware `datetime`, a `date` or an RFC 3339 / YYYY-MM-DD string.
    """

    uids: Values = None
    index_uids: Values = None
    statuses: Values = None
    types: Values = None
    canceled_by: Values = None
    before_enqueued_at: DateBound = None
    after_enqueued_at: DateBound = None
    before_started_at: DateBound = None
    after_started_at: DateBound = None
    before_finished_at: DateBound = None
    after_finished_at: DateBound = None

    @classmethod
    def of(cls, filter: TaskFilter | None = None, **filters: Any) -> TaskFilter:
        """The filter a client method was given, either as a `TaskFilter` or as keywords."""
        if filter is not None and filters:
            raise TypeError("give either a TaskFilter or filter keywords, not both")
        return filter if filter is not None else cls(**filters)

    @classmethod
    def from_query(cls, params: dict[str, str]) -> TaskFilter:
        """A filter from HTTP-style parameters (`{"statuses": "enqueued,failed"}`), camelCase or snake_case."""
        by_name = {camel(f.name): f.name for f in fields(cls)} | {f.name: f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, text in params.items():
            if key not in by_name:
                raise TaskHubError(
                    "bad_request",
                    f"Unknown parameter `{key}`: expected one of "
                    + ", ".join(f"`{camel(f.name)}`" for f in fields(cls))
                    + ".",
                )
            name = by_name[key]
            values[name] = split_list(text) if name in LIST_FIELDS else text
        return cls(**values)

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def to_proto(self) -> task_pb2.TaskFilter:
        """The proto filter; raises `TaskHubError` (the HTTP API's code and message) on a bad value."""
        message = task_pb2.TaskFilter()
        starred = False
        for name in LIST_FIELDS:
            values = _as_list(getattr(self, name))
            if values is None:
                continue
            if "*" in values:
                # `*` means "no filter" for matching, yet it still counts as a filter for cancel/delete.
                starred = True
                continue
            if name in ("uids", "canceled_by"):
                getattr(message, name).uids.extend(_uids(values, name))
            elif name == "index_uids":
                message.index_uids.SetInParent()
                message.index_uids.index_uids.extend(str(v) for v in values)
            elif name == "statuses":
                message.statuses.SetInParent()
                message.statuses.statuses.extend(
                    STATUS_TO_PROTO[parse_status(v, _located(name, i, len(values)))] for i, v in enumerate(values)
                )
            else:
                message.types.SetInParent()
                types = [parse_type(v, _located(name, i, len(values))) for i, v in enumerate(values)]
                if all(isinstance(t, TaskType) for t in types):
                    message.types.types.extend(TYPE_TO_PROTO[t] for t in types)
                else:  # a registered type among them: all by name, so the server's error names the same position
                    message.types.type_names.extend(str(t) for t in types)
            getattr(message, name).SetInParent()  # an empty list still filters: it matches nothing
        for name in DATE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                getattr(message, name).CopyFrom(timestamp(value, name))
        if starred and not message.ListFields():
            # Every status matches every task: the same "everything", expressed as a set filter.
            message.statuses.statuses.extend(STATUS_TO_PROTO[s] for s in TaskStatus)
        return message
