"""What a producer may enqueue: task types, index uids and per-type details.

The scheduler calls `enqueue_details()` before anything is stored; it answers
the details to store (Meilisearch's keys, in Meilisearch's order) or raises a
`TaskHubError` with a public code, so a bad request never changes the store.
"""

from __future__ import annotations

import re
from typing import Any

from taskhub.errors import TaskHubError
from taskhub.server.model import CustomType, Task, TaskKind, TaskType

_INDEX_UID = re.compile(r"[A-Za-z0-9_-]{1,400}")

# Per type: the details keys in rendering order, which of them a producer
# gives (with a default, or `...` when required) and which the executor fills.
_INPUTS: dict[TaskType, dict[str, object]] = {
    TaskType.DOCUMENT_ADDITION_OR_UPDATE: {"receivedDocuments": ...},
    TaskType.DOCUMENT_DELETION: {"providedIds": 0, "originalFilter": None},
    TaskType.INDEX_CREATION: {"primaryKey": None},
    TaskType.INDEX_UPDATE: {"primaryKey": None},
    TaskType.INDEX_DELETION: {},
    TaskType.INDEX_SWAP: {"swaps": ...},
    TaskType.DUMP_CREATION: {},
}
_ORDER: dict[TaskType, tuple[str, ...]] = {
    TaskType.DOCUMENT_ADDITION_OR_UPDATE: ("receivedDocuments", "indexedDocuments"),
    TaskType.DOCUMENT_DELETION: ("providedIds", "deletedDocuments", "originalFilter"),
    TaskType.INDEX_CREATION: ("primaryKey",),
    TaskType.INDEX_UPDATE: ("primaryKey",),
    TaskType.INDEX_DELETION: ("deletedDocuments",),
    TaskType.INDEX_SWAP: ("swaps",),
    TaskType.DUMP_CREATION: ("dumpUid",),
}

INDEX_UID_RULE = (
    "Index uid can be an integer or a string containing only alphanumeric characters,"
    " hyphens (-) and underscores (_), and can not be more than 400 bytes."
)


def valid_index_uid(value: str) -> bool:
    return _INDEX_UID.fullmatch(value) is not None


def _invalid(message: str) -> TaskHubError:
    return TaskHubError("invalid_task_details", message)


def enqueue_details(type_: TaskKind, index_uid: str | None, given: dict[str, Any] | None) -> dict[str, Any] | None:
    """Checks an enqueue request and answers the details to store."""
    if isinstance(type_, CustomType):
        return _custom_details(type_, index_uid, given)
    if type_ in (TaskType.TASK_CANCELATION, TaskType.TASK_DELETION):
        raise TaskHubError(
            "invalid_task_type", f"`{type_.label}` tasks are enqueued by canceling or deleting tasks, not directly."
        )
    if type_.is_global:
        if index_uid is not None:
            raise TaskHubError("invalid_index_uid", f"`{type_.label}` is a global task and takes no index uid.")
    elif index_uid is None:
        raise TaskHubError("invalid_index_uid", f"`{type_.label}` needs an index uid.")
    elif not valid_index_uid(index_uid):
        raise TaskHubError("invalid_index_uid", f"`{index_uid}` is not a valid index uid. {INDEX_UID_RULE}")

    given = dict(given or {})
    if type_ == TaskType.SNAPSHOT_CREATION:
        if given:
            raise _invalid("`snapshotCreation` takes no details.")
        return None
    if type_ == TaskType.SETTINGS_UPDATE:
        return given  # the submitted settings object, as given
    inputs = _INPUTS[type_]
    if not given.keys() <= inputs.keys():
        unknown = sorted(given.keys() - inputs.keys())
        allowed = ", ".join(f"`{k}`" for k in inputs) or "none"
        raise _invalid(f"`{unknown[0]}` cannot be given for a `{type_.label}` task; it takes: {allowed}.")
    for key, default in inputs.items():
        if key not in given or given[key] is None:
            if default is ...:
                raise _invalid(f"`{key}` is required for a `{type_.label}` task.")
            given[key] = default
    if type_ == TaskType.INDEX_SWAP:
        _check_swaps(given["swaps"])
    return {key: given.get(key) for key in _ORDER[type_]}


def _custom_details(type_: CustomType, index_uid: str | None, given: object) -> dict[str, Any] | None:
    """A registered type: an index uid if any (its ordering key), any JSON object as details, kept as given."""
    if index_uid is not None and not valid_index_uid(index_uid):
        raise TaskHubError("invalid_index_uid", f"`{index_uid}` is not a valid index uid. {INDEX_UID_RULE}")
    if given is not None and not isinstance(given, dict):
        raise _invalid(f"The details of a `{type_.label}` task are a JSON object, not {_json_kind(given)}.")
    return given


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "null"


def _check_swaps(swaps: list[dict[str, Any]]) -> None:
    for swap in swaps:
        indexes = swap.get("indexes", [])
        if len(indexes) != 2:
            raise _invalid(f"Each swap names exactly two indexes, not {len(indexes)}.")
        for index in indexes:
            if not valid_index_uid(index):
                raise TaskHubError("invalid_index_uid", f"`{index}` is not a valid index uid. {INDEX_UID_RULE}")


# Details a worker may report when it finishes a task, per type.
_OUTPUTS: dict[TaskKind, tuple[str, ...]] = {
    TaskType.DOCUMENT_ADDITION_OR_UPDATE: ("indexedDocuments",),
    TaskType.DOCUMENT_DELETION: ("deletedDocuments",),
    TaskType.INDEX_DELETION: ("deletedDocuments",),
}
ERROR_TYPES = ("invalid_request", "internal", "auth", "system")
_CODE = re.compile(r"[a-z0-9_]{1,100}")


def _bad_outcome(message: str) -> TaskHubError:
    return TaskHubError("invalid_task_outcome", message)


def outcome_details(
    task: Task, reported_type: TaskKind | None, reported: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The details of a finished task: what was enqueued plus the counters the worker reported.

    A registered type's worker reports any object (JSON text, whose type is not said: `reported_type`
    None, or the task's own): its keys are merged over the enqueued ones, one level deep, the worker's winning.
    """
    if not reported:
        return task.details
    custom = isinstance(task.type, CustomType)
    if reported_type != task.type and not (custom and reported_type is None):
        raise _bad_outcome(f"Task `{task.uid}` is a `{task.type.label}` task; its details must be of that type.")
    if custom:
        return {**(task.details or {}), **reported}
    allowed = _OUTPUTS.get(task.type, ())
    for key, value in reported.items():
        if key not in allowed:
            raise _bad_outcome(
                f"`{key}` cannot be reported for a `{task.type.label}` task"
                f" (it may report: {', '.join(f'`{k}`' for k in allowed) or 'nothing'})."
            )
        if not isinstance(value, int) or value < 0:
            raise _bad_outcome(f"`{key}` must be a non-negative integer.")
    return {**(task.details or {}), **reported}


def outcome_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Checks a worker's error object and answers it in Meilisearch's shape and key order."""
    if error is None:
        return None
    message, code = error.get("message") or "", error.get("code") or ""
    type_ = error.get("type") or "internal"
    if not message:
        raise _bad_outcome("A failed task's error needs a `message`.")
    if not _CODE.fullmatch(code):
        raise _bad_outcome("A failed task's error needs a `code` of lower-case letters, digits and `_`.")
    if type_ not in ERROR_TYPES:
        raise _bad_outcome(f"An error's `type` is one of {', '.join(f'`{t}`' for t in ERROR_TYPES)}.")
    link = error.get("link") or f"https://docs.meilisearch.com/errors#{code}"
    return {"message": message, "code": code, "type": type_, "link": link}
