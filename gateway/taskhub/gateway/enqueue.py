"""`POST /tasks` bodies: a Meilisearch-style JSON task into an EnqueueTaskRequest.

The body is `{"type": "documentAdditionOrUpdate", "indexUid": "movies",
"details": {"receivedDocuments": 10}}`, details in Meilisearch's camelCase keys; a task
may wait (`"runAt": "2026-01-01T09:00:00Z"`) and carry its own retry policy (`"retry":
{"attempts": 10, "initialDelay": "30s"}`, see `later`).
Shape errors are answered here (`bad_request`, `invalid_task_types`,
`invalid_task_details`); what a type may carry is the server's call. JSON bodies
(here and `/keys`) must say `application/json` (415 `invalid_content_type`) and be
UTF-8 (400 `malformed_payload`).
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from decimal import Decimal

from taskhub.errors import TaskHubError
from taskhub.gateway import later
from taskhub.gateway.render import TYPE_LABELS
from taskhub.v1 import task_pb2, task_service_pb2

BODY_FIELDS = ("type", "indexUid", "details", "runAt", "retry")
# JSON nesting allowed in a settings object: each level costs two protobuf levels
# (Struct, Value), and the server's parser stops at 100.
MAX_DEPTH = 32
U64_MAX = 2**64 - 1
# The largest number a settings value may be (a protobuf Value holds a double), exactly: one past it is
# refused even where a double would round it down, so the OpenAPI document can state the bound.
DOUBLE_MAX = sys.float_info.max
_DOUBLE_MAX_EXACTLY = Decimal(DOUBLE_MAX)

_TYPE_BY_LABEL = {label.lower(): value for value, label in TYPE_LABELS.items()}
_CASES = {field.name for field in task_pb2.TaskDetails.DESCRIPTOR.oneofs_by_name["kind"].fields}
# Task type -> its `TaskDetails.kind` case (`TASK_TYPE_INDEX_CREATION` -> `index_creation`).
_CASE_OF = {
    v.number: v.name.removeprefix("TASK_TYPE_").lower()
    for v in task_pb2.TaskType.DESCRIPTOR.values
    if v.name.removeprefix("TASK_TYPE_").lower() in _CASES
}


def _bad(message: str) -> TaskHubError:
    return TaskHubError("bad_request", message)


def _invalid(message: str) -> TaskHubError:
    return TaskHubError("invalid_task_details", message)


def _not_json(name: str):
    raise ValueError(f"`{name}` is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if abs(value) == float("inf") or (abs(value) == DOUBLE_MAX and abs(Decimal(text)) > _DOUBLE_MAX_EXACTLY):
        _not_json(text)
    return value


def _text(value: str, where: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a `\ud800` escape
        raise _bad(f"`{where}` is not valid Unicode text.") from None
    return value


def _check_settings(value, depth: int = 0) -> None:
    """A settings object must nest at most MAX_DEPTH levels and hold valid text only."""
    if depth > MAX_DEPTH:
        raise _invalid(f"`details` nests deeper than {MAX_DEPTH} levels.")
    if isinstance(value, dict):
        for key, item in value.items():
            _text(key, "details")
            _check_settings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_settings(item, depth + 1)
    elif isinstance(value, str):
        _text(value, "details")
    elif isinstance(value, int) and abs(value) > _DOUBLE_MAX_EXACTLY:
        raise _invalid(f"`details` holds an integer past ±{DOUBLE_MAX!r}, the largest a double holds.")


ACCEPTED_TYPES = "Accepted values for the Content-Type header are: `application/json`"


def require_json(content_type: str | None) -> None:
    """A JSON body's Content-Type must be `application/json` (its charset, if named, UTF-8), as Meilisearch's."""
    if content_type is None:
        raise TaskHubError("missing_content_type", f"A Content-Type header is missing. {ACCEPTED_TYPES}")
    essence, *parameters = (part.strip() for part in content_type.split(";"))
    charsets = [
        value.strip().strip('"').lower()
        for name, _, value in (p.partition("=") for p in parameters)
        if name.strip().lower() == "charset"
    ]
    if essence.lower() != "application/json" or any(charset not in ("utf-8", "utf8") for charset in charsets):
        raise TaskHubError("invalid_content_type", f"The Content-Type `{content_type}` is invalid. {ACCEPTED_TYPES}")


def utf8(raw: bytes) -> str:
    """The body as text: UTF-8 only, without a byte order mark (JSON's own rule, RFC 8259 §8.1)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskHubError(
            "malformed_payload",
            f"The json payload provided is malformed. `the body is not UTF-8: invalid byte at position {exc.start}`.",
        ) from None
    if "\x00" in text:  # never in JSON text; all over UTF-16 or UTF-32 that happens to be valid UTF-8
        raise TaskHubError(
            "malformed_payload",
            "The json payload provided is malformed. `the body holds NUL bytes:"
            " it is not UTF-8 JSON (UTF-16 or UTF-32?)`.",
        )
    if text.startswith("\ufeff"):
        raise TaskHubError(
            "malformed_payload",
            "The json payload provided is malformed. `the body starts with a"
            " byte order mark: JSON is UTF-8 without one`.",
        )
    return text


def parse(raw: bytes) -> task_service_pb2.EnqueueTaskRequest:
    """The request for a `POST /tasks` body, or a TaskHubError saying what is wrong with it."""
    text = utf8(raw)
    if not text.strip():
        raise _bad("The request body is empty; expected a JSON object with `type`, `indexUid` and `details`.")
    try:
        # NaN, Infinity and 1e400 are not JSON numbers, and could not be answered back as JSON.
        body = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object with `type`, `indexUid` and `details`.")
    for key in body:
        if key not in BODY_FIELDS:
            raise _bad(f"Unknown field `{key}`: expected one of " + ", ".join(f"`{f}`" for f in BODY_FIELDS))
    if "type" not in body:
        raise _bad("Missing field `type`")

    name = body["type"]
    if not isinstance(name, str):
        raise _bad("`type` must be a string, such as `documentAdditionOrUpdate`.")
    type_ = _TYPE_BY_LABEL.get(name.lower()) if name.isascii() else None
    # Any other name may be a type registered at the server, which knows them (and answers
    # `invalid_task_types`, listing them, for one it does not).
    request = task_service_pb2.EnqueueTaskRequest(type=type_) if type_ else _named(name)

    index_uid = body.get("indexUid")
    if index_uid is not None:
        if not isinstance(index_uid, str):
            raise _bad("`indexUid` must be a string or null.")
        request.index_uid = _text(index_uid, "indexUid")

    details = body.get("details")
    if details is not None:
        if not isinstance(details, dict):
            raise _invalid("`details` must be an object or null.")
        if type_ is None:
            # Checked for valid text as settings are; carried as JSON text, key order and large integers kept.
            _check_settings(details)
            request.details.custom_json = json.dumps(details, separators=(",", ":"))
        else:
            _fill_details(request, type_, details)
    later.fill(request, body)
    return request


def _named(name: str) -> task_service_pb2.EnqueueTaskRequest:
    return task_service_pb2.EnqueueTaskRequest(type_name=_text(name, "type"))


def custom_metadata(raw_query: str, request: task_service_pb2.EnqueueTaskRequest) -> None:
    """`?customMetadata=STRING` (Meilisearch v1.26+): kept with the task; any other parameter is refused."""
    for key, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        if key != "customMetadata":
            raise _bad(f"Unknown parameter `{key}`: expected one of `customMetadata`")
        request.custom_metadata = _text(value, "customMetadata")


def _fill_details(request: task_service_pb2.EnqueueTaskRequest, type_: int, details: dict) -> None:
    label = TYPE_LABELS[type_]
    case = _CASE_OF.get(type_)
    if case is None:  # snapshotCreation has no details message
        if details:
            raise _invalid(f"`{label}` takes no details.")
        return
    sub = getattr(request.details, case)
    sub.SetInParent()
    if case == "settings_update":
        _check_settings(details)
        try:
            sub.settings.update(details)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. an integer too large for a double
            raise _invalid(f"`details` cannot be stored: {exc}.") from None
        return
    fields = sub.DESCRIPTOR.fields_by_camelcase_name
    for key, value in details.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(f"`{f.json_name}`" for f in sub.DESCRIPTOR.fields)
            raise _invalid(f"`details.{key}` is not a detail of a `{label}` task; its details are {known}.")
        if value is None:
            continue
        if field.name == "swaps":
            _fill_swaps(sub, value)
        elif field.type == field.TYPE_STRING:
            if not isinstance(value, str):
                raise _invalid(f"`details.{key}` must be a string or null.")
            setattr(sub, field.name, _text(value, f"details.{key}"))
        else:
            if isinstance(value, float) and value.is_integer():  # `10.0` is an integer to JSON Schema too
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
                raise _invalid(f"`details.{key}` must be a non-negative integer or null.")
            setattr(sub, field.name, value)


def _fill_swaps(sub: task_pb2.IndexSwapDetails, swaps) -> None:
    message = '`details.swaps` must be a list of objects like `{"indexes": ["a", "b"]}`.'
    if not isinstance(swaps, list):
        raise _invalid(message)
    for swap in swaps:
        if not isinstance(swap, dict) or set(swap) != {"indexes"} or not isinstance(swap["indexes"], list):
            raise _invalid(message)
        if not all(isinstance(index, str) for index in swap["indexes"]):
            raise _invalid(message)
        sub.swaps.add(indexes=[_text(index, "details.swaps") for index in swap["indexes"]])
