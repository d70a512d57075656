"""The payload limit's arithmetic, shared by the server and the gateway (SPEC §10).

The limit counts JSON bytes: an HTTP body, a task's details as JSON. gRPC carries the
same values in protobuf, where a JSON value can take several times its JSON size, so
the gRPC message limits follow the payload limit with room for that growth.
"""

from __future__ import annotations

import json

MIB = 1024 * 1024
DEFAULT_PAYLOAD_LIMIT = MIB
# The most a JSON value grows in protobuf: a one-digit number in a list (two JSON bytes,
# `0,`) becomes a `Value` with a double, eleven bytes on the wire.
PROTOBUF_GROWTH = 6
# Room for the fields around the details in a request (type, index uid, keys, ...).
ENVELOPE = 64 * 1024
# No smaller than this: a page of tasks and a lease's batch are bounded by it.
MIN_MESSAGE = 64 * MIB

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def receive_limit(payload_limit: int) -> int:
    """The gRPC server's receive limit: any request whose JSON fits the payload limit fits in it."""
    return payload_limit * PROTOBUF_GROWTH + ENVELOPE


def message_limit(payload_limit: int) -> int:
    """The send limit (and the gateway's receive limit): a page, or one task of the largest details."""
    return max(MIN_MESSAGE, receive_limit(payload_limit) + ENVELOPE)


def json_size(value: object) -> int:
    """The size in bytes of `value` as compact UTF-8 JSON, as a response carries it."""
    return len(_compact(value).encode("utf-8"))
