"""What the OpenAPI document says a request may hold: the values the gateway and its server accept.

Each pattern, bound and enum here is one the server (or the gateway's parsing) enforces, so a
request the document allows is one the service takes; tests/test_openapi_schemathesis.py checks
that both ways. Where the server's rule cannot be said in JSON Schema (an expiry in the future, a
count of filter values, how deep settings nest) the description says it and the test leaves that case out.
"""

from __future__ import annotations

import sys

from taskhub.gateway.enqueue import MAX_DEPTH
from taskhub.gateway.render import STATUS_LABELS, TYPE_LABELS

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
MAX_FILTER_VALUES = 10_000  # the server's cap on a filter list (README, "Payload limits")
INDEX_UID = "[A-Za-z0-9_-]{1,400}"  # Meilisearch's index uid rule, which the server applies

_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
# Leap years, 0004 to 9996: a multiple of 4 not ending in 00, or of 400 (0000 is no year).
_LEAP_YEAR = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
# Days as the calendar has them: 31 in January, March, ...; 30 in April, June, September, November;
# February 28, and 29 in a leap year.
_DATE = (
    f"({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    f"|02-(0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)"
)
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
_ZONE = "([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
# taskhub.dates: a date, or RFC 3339 (`T`, `t` or a space; a fraction of any length; `Z`, `z` or an offset).
DATE_FILTER = f"^(\\*|{_DATE}|{_DATE}[Tt ]{_TIME}(\\.[0-9]+)?{_ZONE})$"
# Meilisearch's four shapes of an expiry: a date; RFC 3339 (with `T` or `t`); a date and time in UTC with
# `T`, `t` or a space. It must also be in the future, and in years 1 to 9999 once its offset is applied,
# which no pattern can say: the description says so and the test leaves those out.
EXPIRES_AT = f"^{_DATE}([Tt]{_TIME}(\\.[0-9]+)?{_ZONE}|[Tt ]{_TIME})?$"
# A task's `runAt` (gateway/later.py): RFC 3339 with a time, from a day ago to 366 days ahead (the server's bound,
# which no pattern can say: the description says so and the test leaves the others out).
RUN_AT = f"^{_DATE}[Tt ]{_TIME}(\\.[0-9]+)?{_ZONE}$"
# A duration of a retry policy: `500ms`, `10s`, `5m`, `1h`, `1d`, or seconds as a string or a number.
DURATION = "^[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)?$"
# A task type registered at the server (`--task-types`); the gateway does not know which are.
REGISTERED_TYPE = "^[a-z][A-Za-z0-9]{0,63}$"
ENQUEUED_TYPES = [label for label in TYPE_LABELS.values() if label not in ("taskCancelation", "taskDeletion")]
# The server's (rules/auth.ACTIONS), which the gateway cannot import: tests/test_gateway_openapi.py keeps them equal.
ACTIONS = [
    "tasks.get",
    "tasks.enqueue",
    "tasks.cancel",
    "tasks.delete",
    "tasks.requeue",
    "tasks.*",
    "dumps.create",
    "dumps.*",
    "snapshots.create",
    "snapshots.*",
    "version",
    "metrics.get",
    "metrics.*",
    "workers.*",
    "webhooks.get",
    "webhooks.create",
    "webhooks.update",
    "webhooks.delete",
    "webhooks.*",
    "*",
]
# The server's caps on a key's labels, in characters (code points) as maxLength counts them.
NAME_CHARACTERS, DESCRIPTION_CHARACTERS = 255, 4096


def comma_list(value: str) -> dict:
    """A comma-separated list of `value` or `*`, empty items ignored.

    The server's cap of MAX_FILTER_VALUES values is on the count, not the length (a uid may have any
    number of leading zeros), and a repetition bound that large is no pattern: the description says it.
    """
    item = f"(\\*|{value})"
    return {"type": "string", "pattern": f"^{item}?(,{item}?)*$"}


def any_case(labels) -> str:
    """Labels as an alternation matching them in any ASCII case, as the server reads them."""
    return (
        "("
        + "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in label) for label in labels)
        + ")"
    )


# A u32 as Meilisearch (Rust's `u32::from_str`) reads one: an optional `+`, any leading zeros.
U32 = (
    "\\+?0*([0-9]{1,9}|[1-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}"
    "|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])"
)
FILTER_SCHEMAS = {
    "uids": comma_list(U32),
    "batchUids": comma_list(U32),
    "canceledBy": comma_list(U32),
    "types": comma_list(any_case(TYPE_LABELS.values())),
    "statuses": comma_list(any_case(STATUS_LABELS.values())),
    "indexUids": comma_list(INDEX_UID),
}
PAGE_SCHEMAS = {
    "limit": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
    "from": {"type": "integer", "minimum": 0, "maximum": U32_MAX},
    "reverse": {"type": "boolean"},
}


def label(characters: int) -> dict:
    return {
        "type": ["string", "null"],
        "maxLength": characters,
        # No NUL: the stores keep labels as text, which PostgreSQL's refuses to hold one of.
        "pattern": "^[^\\u0000]*$",
        "description": f"At most {characters} characters, none of them NUL.",
    }


_COUNT = {"type": "integer", "minimum": 0, "maximum": U64_MAX}
_NO_DETAILS = {"type": ["object", "null"], "maxProperties": 0}
_INDEX_UID = {"type": "string", "pattern": f"^{INDEX_UID}$"}
# A settings value is any JSON value, its numbers those a double holds (the server refuses one past the
# largest), nested up to MAX_DEPTH levels: a recursive schema. The depth cap is in the description:
# a schema that counts levels would be 32 copies of this one.
SETTING_VALUE = {
    "anyOf": [
        {"type": ["string", "boolean", "null"]},
        {"type": "number", "minimum": -sys.float_info.max, "maximum": sys.float_info.max},
        {"type": "array", "items": {"$ref": "#/components/schemas/SettingValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/SettingValue"}},
    ],
    "description": f"Any JSON value, its numbers within ±{sys.float_info.max!r} (a double), nested at most"
    f" {MAX_DEPTH} levels below the settings object.",
}
_SETTING = {"$ref": "#/components/schemas/SettingValue"}

# Per type it may be enqueued as: (whether it names an index, its details' schema, whether details are required).
_DETAILS = {
    "documentAdditionOrUpdate": (
        True,
        {
            "type": "object",
            "required": ["receivedDocuments"],
            "additionalProperties": False,
            "properties": {"receivedDocuments": _COUNT},
        },
        True,
    ),
    "documentDeletion": (
        True,
        {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {
                "providedIds": {**_COUNT, "type": ["integer", "null"]},
                "originalFilter": {"type": ["string", "null"]},
            },
        },
        False,
    ),
    "indexCreation": (
        True,
        {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {"primaryKey": {"type": ["string", "null"]}},
        },
        False,
    ),
    "indexUpdate": (
        True,
        {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {"primaryKey": {"type": ["string", "null"]}},
        },
        False,
    ),
    "indexDeletion": (True, _NO_DETAILS, False),
    "settingsUpdate": (
        True,
        {
            "type": ["object", "null"],
            "additionalProperties": _SETTING,
            "description": "The settings object, stored and answered as given.",
        },
        False,
    ),
    "indexSwap": (
        False,
        {
            "type": "object",
            "required": ["swaps"],
            "additionalProperties": False,
            "properties": {
                "swaps": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["indexes"],
                        "additionalProperties": False,
                        "properties": {"indexes": {"type": "array", "items": _INDEX_UID, "minItems": 2, "maxItems": 2}},
                    },
                }
            },
        },
        True,
    ),
    "dumpCreation": (False, _NO_DETAILS, False),
    "snapshotCreation": (False, _NO_DETAILS, False),
}
assert set(_DETAILS) == set(ENQUEUED_TYPES)


def _new_task(type_: str) -> dict:
    indexed, details, details_required = _DETAILS[type_]
    required = ["type", *(["indexUid"] if indexed else []), *(["details"] if details_required else [])]
    return {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "title": type_,
        "properties": {
            "type": {"const": type_},
            "indexUid": _INDEX_UID if indexed else {"type": "null", "description": "A global task."},
            "details": details,
            **({} if type_ in SERVER_RUN else LATER),
        },
    }


# Types the server runs itself: they take no `runAt` nor `retry`.
SERVER_RUN = ("dumpCreation", "snapshotCreation")


def _duration(most: int, what: str) -> dict:
    return {
        "oneOf": [
            {"type": "string", "pattern": DURATION},
            {"type": "number", "minimum": 0, "maximum": most},
            {"type": "null"},
        ],
        "description": f"{what}: `500ms`, `10s`, `5m`, `1h`, `1d` or seconds, at most {most:,} s.",
    }


# Delayed runs and retries (taskhub extensions; docs/retries.md).
LATER = {
    "runAt": {
        "type": ["string", "null"],
        "pattern": RUN_AT,
        "description": "Not leased before this RFC 3339 date-time, from a day ago to 366 days ahead"
        " (`invalid_task_run_at` otherwise).",
    },
    "retry": {
        "type": ["object", "null"],
        "additionalProperties": False,
        "description": "The task's own retry policy; a field left out takes the server's policy for the type"
        " (`--retry-policy`). `maxDelay` must be at least `initialDelay`, the server's filling what is left"
        " out (`invalid_task_retry_policy` otherwise).",
        "properties": {
            "attempts": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
            "initialDelay": _duration(86_400, "The wait before the second attempt"),
            "maxDelay": _duration(30 * 86_400, "The longest wait between two attempts"),
            "multiplier": {"type": ["number", "null"], "minimum": 1, "maximum": 10},
            "jitter": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        },
    },
}


NEW_TASK = {
    "oneOf": [_new_task(type_) for type_ in ENQUEUED_TYPES],
    "description": "A task to enqueue: its `type` (case-insensitive; `taskCancelation` and `taskDeletion` come from"
    " canceling and deleting), the `indexUid` index tasks need and global ones (`indexSwap`,"
    " `dumpCreation`, `snapshotCreation`) must not have, and its details in Meilisearch's camelCase"
    " keys. Details count toward the payload limit. A server started with `--task-types sendEmail,...`"
    ' also takes those types (`{"type": "sendEmail", "indexUid": null, "details": {...}}`): the index'
    " is optional (their ordering key), the details any JSON object, kept as given. Which types a server"
    " registered is its setting, so this document lists Meilisearch's only; an unregistered name is"
    " 400 `invalid_task_types`, listing the registered ones.",
    "example": {"type": "documentAdditionOrUpdate", "indexUid": "movies", "details": {"receivedDocuments": 10}},
}

NEW_KEY = {
    "type": "object",
    "required": ["actions", "indexes", "expiresAt"],
    "additionalProperties": False,
    "properties": {
        "name": label(NAME_CHARACTERS),
        "description": label(DESCRIPTION_CHARACTERS),
        "uid": {"type": "string", "format": "uuid", "description": "A random UUID when absent."},
        "actions": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ACTIONS}},
        "indexes": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]{0,400}\\*?$"},
            "description": "Index uids, prefix patterns such as `movies*`, or `*`.",
        },
        "expiresAt": {
            "type": ["string", "null"],
            "pattern": EXPIRES_AT,
            "description": "RFC 3339, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (UTC), in the future and no"
            " later than 9999-12-31T23:59:59.999999999Z; null for never.",
        },
    },
    "example": {"name": "ci", "actions": ["tasks.get"], "indexes": ["movies"], "expiresAt": None},
}

KEY_PATCH = {
    "type": "object",
    "additionalProperties": False,
    "description": "Only `name` and `description` change (null clears one, a field left out stays); other"
    " fields answer `immutable_api_key_*`.",
    "properties": {"name": label(NAME_CHARACTERS), "description": label(DESCRIPTION_CHARACTERS)},
}
