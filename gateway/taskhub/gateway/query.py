"""Query strings of the task routes, read the way Meilisearch reads them (SPEC §3).

`app` calls `list_request`, `cancel_request`, `delete_request` and `watch_request`
with the raw query string; each answers the taskhub.v1 request to send, or raises
`TaskHubError` with Meilisearch's code and message. Index uids pass through
unchecked: the server validates them and answers `invalid_task_index_uids`.
"""

from __future__ import annotations

import re
import urllib.parse

from google.protobuf import timestamp_pb2

from taskhub.dates import parse_bound
from taskhub.errors import TaskHubError
from taskhub.gateway.render import STATUS_LABELS, TYPE_LABELS
from taskhub.v1 import task_pb2, task_service_pb2

# In Meilisearch's order: its "Unknown parameter" message lists them so.
FILTER_PARAMETERS = (
    "uids",
    "canceledBy",
    "types",
    "statuses",
    "indexUids",
    "afterEnqueuedAt",
    "beforeEnqueuedAt",
    "afterStartedAt",
    "beforeStartedAt",
    "afterFinishedAt",
    "beforeFinishedAt",
)
LIST_PARAMETERS = ("limit", "from", "reverse", *FILTER_PARAMETERS)

# Date parameter -> TaskFilter field.
DATE_FIELDS = {
    name: re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name) for name in FILTER_PARAMETERS if name.endswith("At")
}

U32_MAX = 2**32 - 1
# What Rust's `u32::from_str` accepts: ASCII digits, one optional `+`.
_UINT = re.compile(r"\+?[0-9]+", re.ASCII)

_STATUS_BY_LABEL = {label: value for value, label in STATUS_LABELS.items()}
_TYPE_BY_LABEL = {label.lower(): value for value, label in TYPE_LABELS.items()}
STATUS_NAMES = ", ".join(f"`{label}`" for label in STATUS_LABELS.values())
TYPE_NAMES = ", ".join(f"`{label}`" for label in TYPE_LABELS.values())


MAX_SEQUENCE = 2**64 - 1
WATCH_PARAMETERS = (*FILTER_PARAMETERS, "after")


def parameters(raw: str) -> dict[str, str]:
    """The decoded parameters, in the order first given; a repeated one keeps its last value."""
    params: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(raw, keep_blank_values=True):
        params[key] = value
    return params


def _unknown(name: str, accepted: tuple[str, ...]) -> TaskHubError:
    expected = ", ".join(f"`{known}`" for known in accepted)
    return TaskHubError("bad_request", f"Unknown parameter `{name}`: expected one of {expected}")


def _invalid(code: str, location: str, reason: str) -> TaskHubError:
    return TaskHubError(code, f"Invalid value in parameter `{location}`: {reason}")


def parse_uint(value: str) -> int | None:
    """A u32 as Meilisearch parses one, or None."""
    if _UINT.fullmatch(value) is None:
        return None
    digits = value.lstrip("+").lstrip("0")
    if len(digits) > len(str(U32_MAX)):  # too large, and int() refuses thousands of digits
        return None
    number = int(digits or "0")
    return number if number <= U32_MAX else None


def _not_uint(value: str) -> str:
    return f"could not parse `{value}` as a positive integer"


def _elements(name: str, value: str):
    """The list's elements with their locations: empty segments dropped, `uids[1]` when several."""
    items = [item for item in value.split(",") if item]
    for i, item in enumerate(items):
        yield item, (f"{name}[{i}]" if len(items) > 1 else name)


def _uid_set(name: str, code: str, value: str) -> list[int] | None:
    """A list of uids; None when `*` is among them (no filter). Every element is checked first."""
    uids, star = [], False
    for item, location in _elements(name, value):
        if item == "*":
            star = True
        elif (uid := parse_uint(item)) is None:
            raise _invalid(code, location, _not_uint(item))
        else:
            uids.append(uid)
    return None if star else uids


def _registered_names(value: str) -> bool:
    """Whether a `types` list names a type Meilisearch does not have (one registered at the server, or none)."""
    return any(
        item != "*" and (not item.isascii() or item.lower() not in _TYPE_BY_LABEL)
        for item, _ in _elements("types", value)
    )


def _label_set(name: str, value: str) -> list[int] | None:
    statuses = name == "statuses"
    by_label = _STATUS_BY_LABEL if statuses else _TYPE_BY_LABEL
    values, star = [], False
    for item, location in _elements(name, value):
        if item == "*":
            star = True
            continue
        # Case-insensitive for ASCII only, as Rust's `eq_ignore_ascii_case`.
        found = by_label.get(item.lower()) if item.isascii() else None
        if found is None:
            if statuses:
                raise _invalid(
                    "invalid_task_statuses",
                    location,
                    f"`{item}` is not a valid task status. Available statuses are {STATUS_NAMES}.",
                )
            raise _invalid(
                "invalid_task_types", location, f"`{item}` is not a valid task type. Available types are {TYPE_NAMES}."
            )
        values.append(found)
    return None if star else values


def parse_date(name: str, value: str) -> timestamp_pb2.Timestamp:
    """RFC 3339, or `YYYY-MM-DD`: midnight UTC of that day for before*, of the next day for after*."""
    try:
        seconds, nanos = parse_bound(value, after=name.startswith("after"))
    except ValueError:  # a day or month that does not exist, year 0, not a date at all...
        raise _invalid(
            "invalid_task_" + DATE_FIELDS[name],
            name,
            f"`{value}` is an invalid date-time. It should follow the YYYY-MM-DD or RFC 3339 date-time format.",
        ) from None
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def _apply(message: task_pb2.TaskFilter, name: str, value: str) -> None:
    """Adds one filter parameter to `message`; `*` adds nothing (it matches everything)."""
    if name in ("uids", "canceledBy"):
        code = "invalid_task_uids" if name == "uids" else "invalid_task_canceled_by"
        uids = _uid_set(name, code, value)
        if uids is not None:
            field = message.uids if name == "uids" else message.canceled_by
            field.SetInParent()  # set even when empty: `uids=` matches nothing
            field.uids.extend(uids)
    elif name == "types" and _registered_names(value):
        # A name that is none of Meilisearch's may be a type registered at the server: every element goes by
        # name, in order, so that the server's `invalid_task_types` names the same position as this would.
        message.types.SetInParent()
        message.types.type_names.extend(item for item, _ in _elements(name, value))
    elif name in ("statuses", "types"):
        values = _label_set(name, value)
        if values is not None:
            field = getattr(message, name)
            field.SetInParent()
            getattr(field, name).extend(values)
    elif name == "indexUids":
        items = [item for item in value.split(",") if item]
        if "*" not in items:
            message.index_uids.SetInParent()
            message.index_uids.index_uids.extend(items)
    elif value != "*":
        getattr(message, DATE_FIELDS[name]).CopyFrom(_in_range(parse_date(name, value)))


# google.protobuf.Timestamp's range (years 1..9999), out of which the server refuses a date. A bound that
# Meilisearch takes but that lands past an end (`afterEnqueuedAt=9999-12-31` is the next midnight; an
# offset can cross one) is held at that end, where it matches the same tasks: none are dated beyond it.
_FIRST = timestamp_pb2.Timestamp(seconds=-62_135_596_800)
_LAST = timestamp_pb2.Timestamp(seconds=253_402_300_799, nanos=999_999_999)


def _in_range(moment: timestamp_pb2.Timestamp) -> timestamp_pb2.Timestamp:
    if moment.seconds < _FIRST.seconds:
        return _FIRST
    return _LAST if moment.seconds > _LAST.seconds else moment


def list_request(raw: str) -> task_service_pb2.ListTasksRequest:
    """`GET /tasks?...` as a ListTasksRequest; the first bad parameter, in query order, is the error."""
    request = task_service_pb2.ListTasksRequest()
    for name, value in parameters(raw).items():
        if name not in LIST_PARAMETERS:
            raise _unknown(name, LIST_PARAMETERS)
        if name in ("limit", "from"):
            number = parse_uint(value)
            if number is None:
                raise _invalid(f"invalid_task_{name}", name, _not_uint(value))
            setattr(request, name, number)  # `from` is a Python keyword, hence setattr
        elif name == "reverse":
            if value not in ("true", "false"):
                raise _invalid(
                    "invalid_task_reverse",
                    "reverse",
                    f"could not parse `{value}` as a boolean, expected either `true` or `false`",
                )
            request.reverse = value == "true"
        else:
            _apply(request.filter, name, value)
    return request


def _matching_filter(raw: str) -> task_pb2.TaskFilter:
    params = parameters(raw)
    message = task_pb2.TaskFilter()
    for name, value in params.items():
        if name not in FILTER_PARAMETERS:
            raise _unknown(name, FILTER_PARAMETERS)
        _apply(message, name, value)
    if params and not message.ListFields():
        # Only `*` values (`?statuses=*`): a filter that matches every task, which
        # Meilisearch accepts where no filter at all is `missing_task_filters`.
        # Every task has one of the statuses, so this says exactly that.
        message.statuses.statuses.extend(STATUS_LABELS)
    return message


def cancel_request(raw: str) -> task_service_pb2.CancelTasksRequest:
    """`POST /tasks/cancel?...`; `originalFilter` is the query string as received."""
    return task_service_pb2.CancelTasksRequest(filter=_matching_filter(raw), original_filter="?" + raw)


def delete_request(raw: str) -> task_service_pb2.DeleteTasksRequest:
    """`DELETE /tasks?...`; `originalFilter` is the query string as received."""
    return task_service_pb2.DeleteTasksRequest(filter=_matching_filter(raw), original_filter="?" + raw)


def requeue_request(raw: str) -> task_service_pb2.RequeueTasksRequest:
    """`POST /tasks/requeue?...`: the filters and errors of `POST /tasks/cancel`."""
    return task_service_pb2.RequeueTasksRequest(filter=_matching_filter(raw))


def watch_request(raw: str, last_event_id: int | None) -> task_service_pb2.WatchTasksRequest:
    """`GET /tasks/events?...`: GET /tasks's filters and errors, without `limit`, `from` or `reverse`.

    No filter at all follows every task. It resumes after `last_event_id` (the header, which a
    reconnecting `EventSource` sends), else after the `after` parameter (for a first connection
    from a known sequence number, which `EventSource` cannot put in a header).
    """
    params = parameters(raw)
    after = params.pop("after", None)
    request = task_service_pb2.WatchTasksRequest(
        after=last_event_id if last_event_id is not None or after is None else sequence(after, "parameter `after`")
    )
    for name, value in params.items():
        if name not in FILTER_PARAMETERS:
            raise _unknown(name, WATCH_PARAMETERS)
        _apply(request.filter, name, value)
    return request


def sequence(raw: str, where: str) -> int:
    """A watch cursor: a change's sequence number (an event's `id`), as a header or parameter gives it."""
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_SEQUENCE:
        raise TaskHubError(
            "invalid_watch_cursor",
            f"Invalid {where}: `{raw}` is not a sequence number (the non-negative integer `id` of an event).",
        )
    return int(value)
