"""The gateway's OpenAPI 3.1 document, served at `GET /openapi.json`.

Built from the same names `query` parses, so the documented parameters cannot
drift from the accepted ones; a test checks every route is documented and
every documented operation is a route.
"""

from __future__ import annotations

from taskhub.gateway import openapi_batches, openapi_metrics, openapi_operations, openapi_webhooks
from taskhub.gateway.guard import ANY_HOST_PATHS
from taskhub.gateway.openapi_schemas import (
    DATE_FILTER,
    FILTER_SCHEMAS,
    KEY_PATCH,
    MAX_FILTER_VALUES,
    NEW_KEY,
    NEW_TASK,
    PAGE_SCHEMAS,
    REGISTERED_TYPE,
    SETTING_VALUE,
    U32_MAX,
    U64_MAX,
)
from taskhub.gateway.query import FILTER_PARAMETERS, LIST_PARAMETERS, MATCHING_PARAMETERS
from taskhub.gateway.render import SETTINGS_ORDER, STATUS_LABELS, TYPE_LABELS

_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}
_DATE = {"type": "string", "format": "date-time", "example": "2021-08-10T14:29:17.000000Z"}
_NULLABLE_DATE = {"type": ["string", "null"], "format": "date-time"}

# Meilisearch reads page numbers with Rust's `from_str`, which takes `+5` and `007`; taskhub does the same,
# so a client written for Meilisearch works. The schema stays `integer`, the form a client should send.
_AS_RUST = " As in Meilisearch, a leading `+` and leading zeros are read too (`+5`, `007`)."
_PARAMETER_TEXT = {
    "limit": ("integer", "Number of tasks to answer; 20 by default." + _AS_RUST),
    "from": ("integer", "Uid of the first task to answer, inclusive (the `next` of the previous page)." + _AS_RUST),
    "reverse": ("boolean", "`true` lists oldest first; `false` (default) newest first."),
    "uids": ("string", "Comma-separated task uids; `*` for all."),
    "batchUids": ("string", "Comma-separated batch uids: the tasks those batches held; `*` for all."),
    "canceledBy": ("string", "Comma-separated uids of the `taskCancelation` tasks that canceled them."),
    "types": (
        "string",
        "Comma-separated task types, case-insensitive; `*` for all. A server started with `--task-types`"
        " also takes the names it registered (`sendEmail`); its `invalid_task_types` message lists them.",
    ),
    "statuses": ("string", "Comma-separated statuses, case-insensitive; `*` for all."),
    "indexUids": ("string", "Comma-separated index uids, case-sensitive; `*` for all."),
}
for _name in FILTER_PARAMETERS:
    if _name.endswith("At"):
        _bound, _field = ("before", _name[6:]) if _name.startswith("before") else ("after", _name[5:])
        _PARAMETER_TEXT[_name] = (
            "string",
            f"Tasks whose `{_field[0].lower() + _field[1:]}` is strictly {_bound}"
            " this RFC 3339 date-time or `YYYY-MM-DD` date.",
        )


def _schema(name: str) -> dict:
    cap = f" At most {MAX_FILTER_VALUES} values." if name in FILTER_SCHEMAS else ""
    return {
        **PAGE_SCHEMAS.get(name, FILTER_SCHEMAS.get(name, {"type": "string", "pattern": DATE_FILTER})),
        "description": _PARAMETER_TEXT[name][1] + cap,
    }


def _parameter(name: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": _PARAMETER_TEXT[name][1],
        "schema": _schema(name),
    }


# Cancel and delete need at least one filter (400 `missing_task_filters` otherwise), which separate
# parameters cannot say: the filters are one exploded object parameter, each property its own `name=value`.
_AT_LEAST_ONE_FILTER = [
    {
        "name": "filters",
        "in": "query",
        "required": True,
        "style": "form",
        "explode": True,
        "description": "At least one filter, each as its own query parameter (`?statuses=enqueued&indexUids=movies`);"
        " `*` as a value matches every task.",
        "schema": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {name: _schema(name) for name in MATCHING_PARAMETERS},
        },
    }
]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "An error: `{message, code, type, link}`.")
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the same key with the same request answers the first task's summary again"
    " (202) and enqueues nothing; with another request, 409 `idempotency_key_conflict`. 1 to 256 bytes; kept per"
    " API key for 24 hours (`--idempotency-ttl`). Taskhub extension.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}
_CONFLICT = {"409": _json(_ref("Error"), "The idempotency key was used with another request.")}
# Where a body is read: it must be JSON, and within the payload limit.
_BODY_ERRORS = {
    "413": _json(
        _ref("Error"),
        "`payload_too_large`: the body is over `--http-payload-size-limit` (1 MiB by"
        " default), refused while it streams in.",
    ),
    "415": _json(
        _ref("Error"),
        "`missing_content_type` or `invalid_content_type`: the body is sent as anything"
        " but `application/json` (a `charset`, if named, must be UTF-8).",
    ),
}
_CROSS_SITE = _json(
    _ref("Error"),
    "`host_not_allowed`: the `Host` header does not name this gateway;"
    " `cross_origin_request_refused`: a request that changes something came from a web page at"
    ' another origin (README, "Cross-site protection"). With a master key, also'
    " `invalid_api_key`: the key does not grant this.",
)
_ENQUEUED = _json(_ref("TaskSummary"), "The task was enqueued; here it is in short.")
# A task's type: one of Meilisearch's, or one registered at the server (`--task-types`).
_TYPE = {
    "anyOf": [
        {"type": "string", "enum": list(TYPE_LABELS.values())},
        {"type": "string", "pattern": REGISTERED_TYPE, "description": "A type registered with `--task-types`."},
    ]
}
_CUSTOM_METADATA = {
    "name": "customMetadata",
    "in": "query",
    "required": False,
    "description": "Any string, kept with the task and answered as its `customMetadata` (as Meilisearch v1.26+);"
    " counts toward the payload limit.",
    "schema": {"type": "string"},
}

_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["message", "code", "type", "link"],
        "properties": {
            "message": {"type": "string"},
            "code": {"type": "string", "example": "task_not_found"},
            "type": {"type": "string", "enum": ["invalid_request", "internal", "auth", "system"]},
            "link": {"type": "string", "example": "https://docs.meilisearch.com/errors#task_not_found"},
        },
    },
    "Task": {
        "type": "object",
        "required": [
            "uid",
            "indexUid",
            "status",
            "type",
            "canceledBy",
            "details",
            "error",
            "duration",
            "enqueuedAt",
            "startedAt",
            "finishedAt",
        ],
        "properties": {
            "uid": {"type": "integer", "minimum": 0},
            "indexUid": {**_NULLABLE_STRING, "description": "null for global tasks"},
            "status": {"type": "string", "enum": list(STATUS_LABELS.values())},
            "type": _TYPE,
            "canceledBy": _NULLABLE_INT,
            "details": {
                "type": ["object", "null"],
                "description": "Per type; the settings object as submitted"
                f" for `settingsUpdate` (keys in this order: {', '.join(SETTINGS_ORDER)}); a registered"
                " type's object as its producer gave it (key order, integers of any size), with its worker's"
                " reported keys merged over it.",
            },
            "error": {"oneOf": [{"type": "null"}, _ref("Error")]},
            "duration": {**_NULLABLE_STRING, "description": "ISO 8601, such as `PT0.006034S`", "example": "PT1S"},
            "enqueuedAt": _DATE,
            "startedAt": _NULLABLE_DATE,
            "finishedAt": _NULLABLE_DATE,
            "batchUid": {
                "type": "integer",
                "minimum": 0,
                "description": "The batch that last processed the task; absent before any did. Taskhub puts it"
                " after `finishedAt`, only when set.",
            },
            "customMetadata": {
                "type": "string",
                "description": "The `customMetadata` given at enqueue (as Meilisearch v1.26+); absent when none was.",
            },
            # Taskhub's extra fields, present only when set (docs/retries.md).
            "runAt": {
                **_DATE,
                "description": "Not leased before then: the `runAt` asked, or the next attempt's time after a"
                " retryable failure.",
            },
            "attempts": {"type": "integer", "minimum": 1, "description": "How many attempts failed so far."},
            "lastError": {
                **_ref("Error"),
                "description": "The last failed attempt's error, while it waits for the next.",
            },
            "requeuedFrom": {
                "type": "integer",
                "minimum": 0,
                "description": "The failed or canceled task this one was requeued from; present only then."
                " Taskhub extension.",
            },
            "worker": {
                "type": "string",
                "description": "The worker holding the task, or the last one that held it (the name its lease was"
                " asked with); absent before any did. Taskhub extension.",
            },
        },
    },
    "TaskSummary": {
        "type": "object",
        "required": ["taskUid", "indexUid", "status", "type", "enqueuedAt"],
        "properties": {
            "taskUid": {"type": "integer", "minimum": 0},
            "indexUid": _NULLABLE_STRING,
            "status": {"type": "string", "enum": ["enqueued"]},
            "type": _TYPE,
            "enqueuedAt": _DATE,
        },
    },
    "TaskList": {
        "type": "object",
        "required": ["results", "total", "limit", "from", "next"],
        "properties": {
            "results": {"type": "array", "items": _ref("Task")},
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "from": _NULLABLE_INT,
            "next": {**_NULLABLE_INT, "description": "The `from` of the next page; null on the last page."},
        },
    },
    "NewTask": NEW_TASK,
    "SettingValue": SETTING_VALUE,
    "Version": {
        "type": "object",
        "required": ["commitSha", "commitDate", "pkgVersion"],
        "properties": {
            "commitSha": {
                "type": "string",
                "description": "A git commit id (SHA-1, or SHA-256 in such a repository), or `unknown`.",
                "pattern": "^([0-9a-f]{40}|[0-9a-f]{64}|unknown)$",
                "example": "b46889b5f0f2f8b91438a08a358ba8f05fc09fc1",
            },
            "commitDate": {
                "type": "string",
                "description": "RFC 3339 in UTC (six fractional digits and `Z`, as every date here), or `unknown`.",
                "example": "2024-02-29T11:34:56.000000Z",
            },
            "pkgVersion": {"type": "string", "example": "0.1.0"},
        },
    },
}

_FILTERS = [_parameter(name) for name in FILTER_PARAMETERS]
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "Resume after this sequence number: the `id` of the last event received (an EventSource"
    " sends it when it reconnects). A value outside the kept history is 400 `invalid_watch_cursor`.",
}
_AFTER = {
    "name": "after",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "Start after this sequence number, for a first connection from a known `id` (an EventSource"
    " cannot set `Last-Event-ID` itself). `Last-Event-ID`, when sent, wins.",
}
_SCHEMAS["TaskEvent"] = {
    "type": "object",
    "required": ["data"],
    "description": "One server-sent event, as its fields: the stream is text, these frames one after another.",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "description": "The change's sequence number."},
        "event": {"type": "string", "enum": ["task", "deleted", "error"]},
        "data": {"oneOf": [_ref("Task"), _ref("Error")], "description": "JSON on one `data:` line."},
    },
}
# A stream, not one JSON value: typed as text/event-stream, each frame described by `TaskEvent`
# (`x-itemSchema`, after OpenAPI 3.2's `itemSchema` for sequential media types).
_EVENT_STREAM = {
    "text/event-stream": {
        "x-itemSchema": _ref("TaskEvent"),
        "schema": {
            "type": "string",
            "contentMediaType": "text/event-stream",
            "description": "Server-sent events. Each change: `id: <sequence>`, `event: task` (`event: deleted` when the"
            " change deleted the task), `data: <the task, as GET /tasks/{uid} answers it>` (a deletion: its last state,"
            " `details` and `error` null). A comment"
            " `: keep-alive` after 15 s without an event. If the watch breaks: `event: error`,"
            " `data: {message, code, type, link}`, then the stream ends.",
        },
    }
}

OPENAPI = {
    "openapi": "3.1.0",
    "info": {
        "title": "taskhub JSON gateway",
        "version": "0.1.0",
        "description": "Meilisearch's tasks API in front of taskhub's gRPC server.",
    },
    "paths": {
        "/tasks": {
            "get": {
                "operationId": "listTasks",
                "summary": "List tasks, newest first",
                "parameters": [_parameter(name) for name in LIST_PARAMETERS],
                "responses": {"200": _json(_ref("TaskList"), "One page of tasks."), "400": _ERROR},
            },
            "post": {
                "operationId": "enqueueTask",
                "summary": "Enqueue a task (taskhub extension)",
                "parameters": [_CUSTOM_METADATA, _IDEMPOTENCY_KEY],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("NewTask")}}},
                "responses": {"202": _ENQUEUED, "400": _ERROR, **_CONFLICT, **_BODY_ERRORS},
            },
            "delete": {
                "operationId": "deleteTasks",
                "summary": "Enqueue a taskDeletion of the finished matching tasks",
                "parameters": _AT_LEAST_ONE_FILTER,
                "responses": {"202": _ENQUEUED, "400": _ERROR},
            },
        },
        "/tasks/cancel": {
            "post": {
                "operationId": "cancelTasks",
                "summary": "Enqueue a taskCancelation of the matching tasks",
                "parameters": _AT_LEAST_ONE_FILTER,
                "responses": {"202": _ENQUEUED, "400": _ERROR},
            },
        },
        "/tasks/requeue": {
            "post": {
                "operationId": "requeueTasks",
                "summary": "Enqueue the failed or canceled matching tasks again (taskhub extension)",
                "description": "Each failed or canceled task matching the filters (other statuses never, whatever"
                " `statuses` says) is enqueued again as a new task: same index, type and details, `requeuedFrom`"
                " its uid. Answered at once with the new tasks, oldest original first; at most 1,000 at once, past"
                " that nothing is requeued (400 `too_many_tasks_to_requeue`). Needs `tasks.requeue`; a key scoped"
                " to some indexes requeues only their tasks.",
                "parameters": _AT_LEAST_ONE_FILTER,
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "required": ["results"],
                            "properties": {"results": {"type": "array", "items": _ref("Task")}},
                        },
                        "The new tasks.",
                    ),
                    "400": _ERROR,
                },
            },
        },
        "/tasks/events": {
            "get": {
                "operationId": "watchTasks",
                "summary": "Follow every change of the matching tasks (server-sent events)",
                "description": "Every committed change of the tasks matching the filters, in commit order. The"
                " stream opens with an id-only frame (`id: <the sequence it starts after>`), so"
                " a reconnect with `Last-Event-ID` misses nothing. Taskhub extension.",
                "parameters": [*_FILTERS, _AFTER, _LAST_EVENT_ID],
                "responses": {
                    "200": {"description": "The stream of changes.", "content": _EVENT_STREAM},
                    "400": _ERROR,
                    "401": _ERROR,
                    "403": _ERROR,
                    "429": _ERROR,
                    "503": _ERROR,
                },
            },
        },
        "/tasks/{uid}": {
            "get": {
                "operationId": "getTask",
                "summary": "One task",
                "parameters": [
                    {
                        "name": "uid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
                    }
                ],
                "responses": {"200": _json(_ref("Task"), "The task."), "400": _ERROR, "404": _ERROR},
            },
        },
        "/tasks/{uid}/events": {
            "get": {
                "operationId": "watchTask",
                "summary": "Follow one task until it finishes (server-sent events)",
                "description": "The task's current state at once, then each change; the stream ends after"
                " `succeeded`, `failed` or `canceled`. Taskhub extension.",
                "parameters": [
                    {
                        "name": "uid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
                    },
                    {
                        **_LAST_EVENT_ID,
                        "description": "The `id` of the last event received: a state"
                        " already seen is not sent again, and 204 answers a client that saw the last.",
                    },
                ],
                "responses": {
                    "200": {"description": "The task's states.", "content": _EVENT_STREAM},
                    "204": {"description": "The client already saw the task's terminal state."},
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            },
        },
        "/dumps": {
            "post": {
                "operationId": "createDump",
                "summary": "Enqueue a dumpCreation",
                "description": "As in Meilisearch: no body and no parameter is read. The server writes a portable"
                " export (tasks and keys) under its dumps folder; the task's `details.dumpUid` names it once it"
                " succeeded. With a master key, needs the `dumps.create` action on every index (`*`).",
                "parameters": [_IDEMPOTENCY_KEY],
                "responses": {"202": _ENQUEUED, "400": _ERROR, **_CONFLICT},
            },
        },
        "/snapshots": {
            "post": {
                "operationId": "createSnapshot",
                "summary": "Enqueue a snapshotCreation",
                "description": "As in Meilisearch: no body and no parameter is read. The server writes a consistent"
                " copy of its database under its snapshots folder; the task's `details` stay null. With a master"
                " key, needs the `snapshots.create` action on every index (`*`).",
                "parameters": [_IDEMPOTENCY_KEY],
                "responses": {"202": _ENQUEUED, "400": _ERROR, **_CONFLICT},
            },
        },
        "/version": {
            "get": {
                "operationId": "getVersion",
                "summary": "The server's version",
                "description": "As Meilisearch answers it. `pkgVersion` is the server's package version; `commitSha`"
                " and `commitDate` the git commit it runs from, known where it runs from a checkout (or was"
                " installed from a git URL, then without its date) and `unknown` otherwise, as Meilisearch"
                " answers for a build without git information. With a master key, needs the `version` action"
                " (on any indexes).",
                "responses": {"200": _json(_ref("Version"), "The version.")},
            },
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Whether the service answers",
                "responses": {
                    "200": _json({"type": "object", "properties": {"status": {"const": "available"}}}, "Available."),
                    "503": _ERROR,
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            },
        },
        "/dashboard": {
            "get": {
                "operationId": "dashboard",
                "summary": "The task dashboard, for a browser (taskhub extension)",
                "description": "An HTML page (its scripts and styles under `/dashboard/static/`) that lists, counts,"
                " watches, cancels, deletes and requeues tasks through the routes above. It loads without a"
                " key and asks for one when the API answers 401 or 403.",
                "responses": {
                    "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}
                },
            },
        },
        "/": {
            "get": {
                "operationId": "root",
                "summary": "Sends a browser to `/dashboard`",
                "responses": {
                    "307": {
                        "description": "Redirect to `/dashboard`.",
                        "headers": {"Location": {"schema": {"type": "string", "const": "/dashboard"}}},
                    }
                },
            },
        },
    },
    "components": {"schemas": _SCHEMAS},
}

# -- API keys, and the bearer scheme every route but /health, /openapi.json and the dashboard asks for --

# Served without a key: health checks, this document, and the dashboard page (which asks for a key itself).
OPEN_PATHS = ("/health", "/openapi.json", "/dashboard", "/")
_KEY_DATE = {**_NULLABLE_DATE, "description": "null: the key never expires"}
_SCHEMAS.update(
    {
        "Key": {
            "type": "object",
            "required": [
                "name",
                "description",
                "key",
                "uid",
                "actions",
                "indexes",
                "expiresAt",
                "createdAt",
                "updatedAt",
            ],
            "properties": {
                "name": _NULLABLE_STRING,
                "description": _NULLABLE_STRING,
                "key": {"type": "string", "description": "The secret to send as `Authorization: Bearer <key>`."},
                "uid": {"type": "string", "format": "uuid"},
                "actions": {"type": "array", "items": {"type": "string"}, "example": ["tasks.get"]},
                "indexes": {"type": "array", "items": {"type": "string"}, "example": ["movies", "books_*"]},
                "expiresAt": _KEY_DATE,
                "createdAt": _DATE,
                "updatedAt": _DATE,
            },
        },
        "KeyList": {
            "type": "object",
            "required": ["results", "offset", "limit", "total"],
            "properties": {
                "results": {"type": "array", "items": _ref("Key")},
                "offset": {"type": "integer"},
                "limit": {"type": "integer"},
                "total": {"type": "integer"},
            },
        },
        "NewKey": NEW_KEY,
        "KeyPatch": KEY_PATCH,
    }
)
_UID_OR_KEY = [
    {
        "name": "uid_or_key",
        "in": "path",
        "required": True,
        "description": "The key's uid or the key itself",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,128}$"},
    }
]
_KEY = _json(_ref("Key"), "The key.")
OPENAPI["paths"].update(
    {
        "/keys": {
            "get": {
                "operationId": "listKeys",
                "summary": "List API keys, newest first (master key only)",
                "parameters": [
                    {
                        "name": "offset",
                        "in": "query",
                        "required": False,
                        "description": "Keys to skip." + _AS_RUST,
                        "schema": {"type": "integer", "minimum": 0, "maximum": U64_MAX},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Page size; 20 by default." + _AS_RUST,
                        "schema": {"type": "integer", "minimum": 0, "maximum": U64_MAX},
                    },
                ],
                "responses": {"200": _json(_ref("KeyList"), "One page of keys."), "400": _ERROR},
            },
            "post": {
                "operationId": "createKey",
                "summary": "Create an API key (master key only)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("NewKey")}}},
                "responses": {
                    "201": _json(_ref("Key"), "The new key, with its secret."),
                    "400": _ERROR,
                    "409": _ERROR,
                    **_BODY_ERRORS,
                },
            },
        },
        "/keys/{uid_or_key}": {
            "get": {
                "operationId": "getKey",
                "summary": "One API key (master key only)",
                "parameters": _UID_OR_KEY,
                "responses": {"200": _KEY, "404": _ERROR},
            },
            "patch": {
                "operationId": "updateKey",
                "summary": "Rename or redescribe an API key (master key only)",
                "parameters": _UID_OR_KEY,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("KeyPatch")}}},
                "responses": {"200": _KEY, "400": _ERROR, "404": _ERROR, **_BODY_ERRORS},
            },
            "delete": {
                "operationId": "deleteKey",
                "summary": "Delete an API key; it stops working at once (master key only)",
                "parameters": _UID_OR_KEY,
                "responses": {"204": {"description": "Deleted."}, "404": _ERROR},
            },
        },
    }
)
_SCHEMAS.update(openapi_batches.SCHEMAS)
OPENAPI["paths"].update(openapi_batches.paths([_parameter(name) for name in LIST_PARAMETERS], _json, _ERROR))
OPENAPI["paths"].update(openapi_metrics.PATHS)
_SCHEMAS.update(openapi_operations.SCHEMAS)
OPENAPI["paths"].update(openapi_operations.paths(_json, _ERROR))
_SCHEMAS.update(openapi_webhooks.SCHEMAS)
OPENAPI["paths"].update(openapi_webhooks.paths(_json, _ERROR, _BODY_ERRORS))
OPENAPI["components"]["securitySchemes"] = {
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "With a master key set, every route but `/health`, `/openapi.json` and the dashboard's needs"
        " `Authorization: Bearer <master key or API key>`; without one, auth is off.",
    }
}
OPENAPI["security"] = [{"Bearer": []}]
for _path, _item in OPENAPI["paths"].items():
    for _operation in _item.values():
        if _path in OPEN_PATHS:
            _operation["security"] = []
        else:
            _operation["responses"]["401"] = _ERROR
        if _path not in ANY_HOST_PATHS:
            _operation["responses"]["403"] = _CROSS_SITE
