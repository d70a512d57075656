"""The OpenAPI description of `GET /batches` and `GET /batches/{uid}`: their schemas and paths."""

from __future__ import annotations

from collections.abc import Callable

from taskhub.gateway.openapi_schemas import U32_MAX
from taskhub.gateway.render import STATUS_LABELS

_DATE = {"type": "string", "format": "date-time", "example": "2021-08-10T14:29:17.000000Z"}
_NULLABLE_DATE = {"type": ["string", "null"], "format": "date-time"}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}

SCHEMAS = {
    "BatchProgress": {
        "type": "object",
        "required": ["steps", "percentage"],
        "properties": {
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["currentStep", "finished", "total"],
                    "properties": {
                        "currentStep": {"type": "string"},
                        "finished": {"type": "integer", "minimum": 0},
                        "total": {"type": "integer", "minimum": 1},
                    },
                },
            },
            "percentage": {"type": "number", "minimum": 0, "maximum": 100},
        },
    },
    "Batch": {
        "type": "object",
        "description": "What one lease, or one task the server ran, processed: Meilisearch's batch object.",
        "required": ["uid", "progress", "details", "stats", "duration", "startedAt", "finishedAt", "batchStrategy"],
        "properties": {
            "uid": {"type": "integer", "minimum": 0},
            "progress": {
                "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/BatchProgress"}],
                "description": "What the worker last reported while the batch runs; null once it ended.",
            },
            "details": {"type": "object", "description": "Its tasks' details summed up, Meilisearch's way."},
            "stats": {
                "type": "object",
                "required": ["totalNbTasks", "status", "types", "indexUids"],
                "properties": {
                    "totalNbTasks": {"type": "integer", "minimum": 0},
                    "status": {**_COUNTS, "propertyNames": {"enum": list(STATUS_LABELS.values())}},
                    "types": _COUNTS,
                    "indexUids": _COUNTS,
                },
            },
            "duration": {"type": ["string", "null"], "description": "ISO 8601; null while it runs"},
            "startedAt": _DATE,
            "finishedAt": _NULLABLE_DATE,
            "batchStrategy": {"type": "string"},
            "lease": {
                "type": "object",
                "description": "Taskhub extension, on batches a worker leased: who, and how the lease ended.",
                "required": ["worker", "state"],
                "properties": {
                    "worker": {"type": "string"},
                    "state": {"enum": ["active", "completed", "expired", "released", "canceled", "lost"]},
                },
            },
        },
    },
    "BatchList": {
        "type": "object",
        "required": ["results", "total", "limit", "from", "next"],
        "properties": {
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Batch"}},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 0},
            "from": {"type": ["integer", "null"]},
            "next": {"type": ["integer", "null"]},
        },
    },
}


def paths(parameters: list[dict], json: Callable[[dict, str], dict], error: dict) -> dict:
    """`/batches` (the task list's parameters, read as for batches) and `/batches/{uid}`."""
    return {
        "/batches": {
            "get": {
                "operationId": "listBatches",
                "summary": "List batches, newest first",
                "description": "A batch matches a filter when it holds a task matching it (`uids` are task uids);"
                " `batchUids` are batch uids. Needs `tasks.get`; a key scoped to indexes sees their batches only.",
                "parameters": parameters,
                "responses": {
                    "200": json({"$ref": "#/components/schemas/BatchList"}, "One page of batches."),
                    "400": error,
                },
            }
        },
        "/batches/{uid}": {
            "get": {
                "operationId": "getBatch",
                "summary": "One batch",
                "parameters": [
                    {
                        "name": "uid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
                    }
                ],
                "responses": {
                    "200": json({"$ref": "#/components/schemas/Batch"}, "The batch."),
                    "400": error,
                    "404": error,
                },
            }
        },
    }
