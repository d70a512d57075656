"""`google.protobuf.Struct` back to the JSON a producer sent, shared by server, gateway and client.

A Struct carries every number as a double; `to_dict` gives back the integers, so a
setting sent as `{"maxTotalHits": 1000}` reads back as 1000, not 1000.0.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2


def to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return _integral(json_format.MessageToDict(struct))


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value
