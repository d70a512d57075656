"""The OpenAPI description of `GET /leases` and `GET /activity` (taskhub extensions): schemas and paths."""

from __future__ import annotations

from collections.abc import Callable

from taskhub.gateway.operations import STATUSES

_DATE = {"type": "string", "format": "date-time", "example": "2021-08-10T14:29:17.000000Z"}
_COUNT = {"type": "integer", "minimum": 0}
_PER_SECOND = {"type": "array", "items": _COUNT, "description": "One count a second from `since` on."}
MAX_SECONDS = 3_600
MAX_LEASES = 1_000

SCHEMAS = {
    "HeldLease": {
        "type": "object",
        "description": "A worker's hold on one batch of tasks.",
        "required": ["worker", "batchUid", "since", "deadline", "tasks"],
        "properties": {
            "worker": {"type": "string", "description": "The name the worker leased with."},
            "batchUid": {"type": ["integer", "null"], "minimum": 0, "description": "The batch the lease runs."},
            "since": {**_DATE, "description": "When the lease was taken (its tasks' `startedAt`)."},
            "deadline": {
                **_DATE,
                "description": "When it ends unless renewed; past for a lease about to be expired.",
            },
            "tasks": {
                "type": "array",
                "description": "The tasks it holds, by uid (a scoped key sees those of its indexes only).",
                "items": {
                    "type": "object",
                    "required": ["uid", "indexUid", "type", "attempts"],
                    "properties": {
                        "uid": {"type": "integer", "minimum": 0},
                        "indexUid": {"type": ["string", "null"]},
                        "type": {"type": "string", "example": "documentAdditionOrUpdate"},
                        "attempts": {**_COUNT, "description": "How many attempts failed before this one."},
                    },
                },
            },
        },
    },
    "LeaseList": {
        "type": "object",
        "required": ["results", "total"],
        "properties": {
            "results": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/HeldLease"},
                "description": "The oldest first, up to `limit`.",
            },
            "total": {**_COUNT, "description": "How many leases are held in all (that the key sees)."},
        },
    },
    "Activity": {
        "type": "object",
        "required": ["since", "seconds", "finished", "indexes"],
        "properties": {
            "since": {**_DATE, "description": "The start of the first second counted; the last is the current one."},
            "seconds": {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS},
            "finished": {
                "type": "object",
                "description": "Tasks finished in each second, by status.",
                "required": ["succeeded", "failed", "canceled"],
                "properties": {"succeeded": _PER_SECOND, "failed": _PER_SECOND, "canceled": _PER_SECOND},
            },
            "indexes": {
                "type": "array",
                "description": "The tasks of each index by status, by index uid; the global tasks last"
                " (`indexUid` null, never shown to a scoped key).",
                "items": {
                    "type": "object",
                    "required": ["indexUid", "statuses"],
                    "properties": {
                        "indexUid": {"type": ["string", "null"]},
                        "statuses": {
                            "type": "object",
                            "required": list(STATUSES),
                            "properties": {status: _COUNT for status in STATUSES},
                        },
                    },
                },
            },
        },
    },
}


def paths(json: Callable[[dict, str], dict], error: dict) -> dict:
    """`/leases` and `/activity`: both need `tasks.get`, and a scoped key sees its indexes' tasks alone."""
    return {
        "/leases": {
            "get": {
                "operationId": "listLeases",
                "summary": "The leases workers hold now (taskhub extension)",
                "description": "Which worker holds which tasks, since when and until when, with each task's failed"
                " attempts. Needs `tasks.get`; a key scoped to indexes sees the leases of their tasks only.",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "How many leases at most, the oldest; 100 when absent.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LEASES, "default": 100},
                    }
                ],
                "responses": {"200": json({"$ref": "#/components/schemas/LeaseList"}, "The leases."), "400": error},
            }
        },
        "/activity": {
            "get": {
                "operationId": "getActivity",
                "summary": "Tasks finished per second, and tasks per index (taskhub extension)",
                "description": "Tasks finished each second by status over the last `seconds` (the current second"
                " included), from the finished dates the server keeps, and each index's tasks by status. Needs"
                " `tasks.get`; a key scoped to indexes counts their tasks only.",
                "parameters": [
                    {
                        "name": "seconds",
                        "in": "query",
                        "required": False,
                        "description": "How many seconds back; 900 (15 minutes) when absent.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS, "default": 900},
                    }
                ],
                "responses": {"200": json({"$ref": "#/components/schemas/Activity"}, "The activity."), "400": error},
            }
        },
    }
