"""API keys on the client side: `ApiKey`, `KeyPage`, and the KeyService requests both clients send.

`TaskHubClient` and `AsyncTaskHubClient` build their requests here and turn the
answers into these frozen dataclasses; `to_dict()` renders Meilisearch's key
object and `GET /keys` page. Every KeyService call needs the master key.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2

from taskhub.client.models import EPOCH, format_time
from taskhub.errors import TaskHubError
from taskhub.v1 import key_service_pb2 as kpb

ExpiresAt = datetime | date | str | None


def _time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    ts = getattr(message, name)
    return EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1_000)


def _show(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key: its secret (`key`), what it may do (`actions`) and on which indexes, until when."""

    uid: str
    key: str
    name: str | None
    description: str | None
    actions: list[str]
    indexes: list[str]
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_proto(cls, message: kpb.ApiKey) -> ApiKey:
        return cls(
            uid=message.uid,
            key=message.key,
            name=message.name if message.HasField("name") else None,
            description=message.description if message.HasField("description") else None,
            actions=list(message.actions),
            indexes=list(message.indexes),
            expires_at=_time(message, "expires_at"),
            created_at=_time(message, "created_at"),
            updated_at=_time(message, "updated_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Meilisearch's key object, fields in Meilisearch's order."""
        return {
            "name": self.name,
            "description": self.description,
            "key": self.key,
            "uid": self.uid,
            "actions": list(self.actions),
            "indexes": list(self.indexes),
            "expiresAt": _show(self.expires_at),
            "createdAt": _show(self.created_at),
            "updatedAt": _show(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class KeyPage:
    """One page of keys, newest first."""

    results: list[ApiKey]
    offset: int
    limit: int
    total: int

    @classmethod
    def from_proto(cls, message: kpb.ListKeysResponse) -> KeyPage:
        return cls(
            results=[ApiKey.from_proto(k) for k in message.results],
            offset=message.offset,
            limit=message.limit,
            total=message.total,
        )

    def to_dict(self) -> dict[str, Any]:
        """Meilisearch's `GET /keys` answer: `{results, offset, limit, total}`."""
        return {
            "results": [k.to_dict() for k in self.results],
            "offset": self.offset,
            "limit": self.limit,
            "total": self.total,
        }


def _strings(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def expires_at(value: ExpiresAt) -> timestamp_pb2.Timestamp | None:
    """A key's end as a Timestamp: an aware datetime (naive is UTC), a date (its midnight UTC), or an
    RFC 3339 / `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DD` string (UTC unless it has an offset); None is never."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise TaskHubError(
                "invalid_api_key_expires_at",
                f"`{value}` is not a valid date. It should follow the"
                " RFC 3339 format, such as `2042-04-02T00:42:42Z` or `2042-04-02`.",
            ) from None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return timestamp_pb2.Timestamp(seconds=calendar.timegm(moment.utctimetuple()), nanos=moment.microsecond * 1_000)


def create_request(
    actions: str | Iterable[str],
    indexes: str | Iterable[str],
    *,
    name: str | None,
    description: str | None,
    expires_at_: ExpiresAt,
    uid: str | None,
) -> kpb.CreateKeyRequest:
    request = kpb.CreateKeyRequest(
        actions=_strings(actions), indexes=_strings(indexes), name=name, description=description, uid=uid
    )
    if (end := expires_at(expires_at_)) is not None:
        request.expires_at.CopyFrom(end)
    return request


def list_request(offset: int, limit: int | None) -> kpb.ListKeysRequest:
    return kpb.ListKeysRequest(offset=offset, limit=limit)


def update_request(
    uid_or_key: str, name: str | None, description: str | None, clear: Iterable[str] = ()
) -> kpb.UpdateKeyRequest:
    """Sets the fields given; `clear` names those to set to null (then every change goes in a field mask)."""
    request = kpb.UpdateKeyRequest(key=uid_or_key, name=name, description=description)
    cleared = list(clear)
    for field in cleared:
        if field not in ("name", "description") or request.HasField(field):
            raise TaskHubError(
                "bad_request", f"`clear` takes `name` and `description`, each not also given a value; not `{field}`."
            )
    if cleared:
        request.update_mask.paths.extend([*(f for f in ("name", "description") if request.HasField(f)), *cleared])
    return request
