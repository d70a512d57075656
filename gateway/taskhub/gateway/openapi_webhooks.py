"""The OpenAPI description of `/webhooks` and `/webhooks/{uuid}` (Meilisearch's webhooks): schemas and paths.

The patterns are the server's own checks (rules/webhooks.py), so a body the document allows is taken and
one it forbids is refused; the url pattern names hosts only, though the server takes an address too when
it lies in an allowed network.
"""

from __future__ import annotations

from collections.abc import Callable

_PORT = r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
URL_PATTERN = r"^https?://([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*" + _PORT + r"([/?][\x21-\x7e]*)?$"
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER_VALUE = r"^[\t\x20-\x7e]*$"
_SECRET = {
    "type": ["string", "null"],
    "pattern": r"^[\x20-\x7e]{0,1024}$",
    "description": "taskhub's extension: a secret to sign each POST with, sent as `X-Taskhub-Signature:"
    " sha256=<hex HMAC-SHA256 of the body as sent>`; empty or null: none. Never shown back.",
}
_URL = {
    "type": "string",
    "pattern": URL_PATTERN,
    "example": "https://your.site/on-tasks-completed",
    "description": "Where finished tasks are POSTed (gzipped ndjson). A literal address is taken too when it is"
    " globally reachable or in `--experimental-allowed-ip-networks`; loopback, private and link-local ones are"
    " refused otherwise (`invalid_webhook_url`).",
}


def _headers(value: dict, description: str) -> dict:
    return {
        "type": "object",
        "maxProperties": 200,
        "propertyNames": {"pattern": _HEADER_NAME},
        "additionalProperties": value,
        "description": description,
        "example": {"Authorization": "Bearer a-secret-token"},
    }


SCHEMAS = {
    "Webhook": {
        "type": "object",
        "description": "A webhook, in Meilisearch's order; `Authorization` values redacted.",
        "required": ["uuid", "isEditable", "url", "headers"],
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "isEditable": {
                "type": "boolean",
                "description": "false for the reserved webhook of `--task-webhook-url` (the nil uuid)",
            },
            "url": {"type": "string"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "secret": {"type": "string", "description": "Present, redacted, when the webhook signs its POSTs."},
            "droppedTasks": {
                "type": "integer",
                "minimum": 1,
                "description": "Present once finished tasks were dropped before delivery (`--webhook-outbox-size`).",
            },
        },
    },
    "WebhookList": {
        "type": "object",
        "required": ["results"],
        "properties": {"results": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}}},
    },
    "NewWebhook": {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "description": "`uuid` and `isEditable` answer `immutable_webhook_*`; at most 20 webhooks"
        " (`invalid_webhooks`).",
        "properties": {
            "url": _URL,
            "headers": {
                "anyOf": [
                    _headers(
                        {"type": ["string", "null"], "pattern": _HEADER_VALUE},
                        "Headers sent with each POST (null: an empty value).",
                    ),
                    {"type": "null"},
                ]
            },
            "secret": _SECRET,
        },
    },
    "WebhookPatch": {
        "type": "object",
        "additionalProperties": False,
        "description": "A field left out stays. `headers`: a header set to null goes, `headers: null` clears"
        " them all (at most 200 after the change).",
        "properties": {
            "url": _URL,
            "headers": {
                "anyOf": [
                    _headers({"type": ["string", "null"], "pattern": _HEADER_VALUE}, "Headers to set or remove."),
                    {"type": "null"},
                ]
            },
            "secret": _SECRET,
        },
    },
}


def paths(json: Callable[[dict, str], dict], error: dict, body_errors: dict) -> dict:
    ref = {"$ref": "#/components/schemas/Webhook"}
    uuid = [
        {
            "name": "uuid",
            "in": "path",
            "required": True,
            "description": "The webhook's uuid, in any spelling (`invalid_webhook_uuid` otherwise)",
            "schema": {"type": "string", "format": "uuid"},
        }
    ]
    one = json(ref, "The webhook.")
    return {
        "/webhooks": {
            "get": {
                "operationId": "listWebhooks",
                "summary": "Every webhook by uuid, the reserved one first (action `webhooks.get`)",
                "responses": {"200": json({"$ref": "#/components/schemas/WebhookList"}, "The webhooks.")},
            },
            "post": {
                "operationId": "createWebhook",
                "summary": "Register an endpoint every finished task is POSTed to (action `webhooks.create`)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewWebhook"}}},
                },
                "responses": {"201": json(ref, "The new webhook."), "400": error, **body_errors},
            },
        },
        "/webhooks/{uuid}": {
            "get": {
                "operationId": "getWebhook",
                "summary": "One webhook (action `webhooks.get`)",
                "parameters": uuid,
                "responses": {"200": one, "400": error, "404": error},
            },
            "patch": {
                "operationId": "updateWebhook",
                "summary": "Change a webhook's url, headers or secret (action `webhooks.update`)",
                "parameters": uuid,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookPatch"}}},
                },
                "responses": {"200": one, "400": error, "404": error, **body_errors},
            },
            "delete": {
                "operationId": "deleteWebhook",
                "summary": "Delete a webhook; what it was owed is dropped (action `webhooks.delete`)",
                "parameters": uuid,
                "responses": {"204": {"description": "Deleted."}, "400": error, "404": error},
            },
        },
    }
