"""The `/keys` routes: Meilisearch's API key management in front of taskhub's gRPC KeyService.

`app` registers `routes(edge, metadata)`. Each handler reads its body or query the
way Meilisearch's deserr does (field by field in the order given; `bad_request`,
`missing_api_key_*`, `invalid_api_key_*`, `immutable_api_key_*`), makes one
KeyService call and renders the key in Meilisearch's key order. Whether a value is
allowed (a known action, an index pattern, a UUID, a date in the future) is the
server's call: it alone knows the actions and its clock.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import date

from google.protobuf import timestamp_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskhub.errors import TaskHubError
from taskhub.gateway import enqueue, query, render
from taskhub.v1 import key_service_pb2 as kpb, key_service_pb2_grpc

Handler = Callable[[Request], Awaitable[Response]]
Metadata = Callable[[Request], tuple[tuple[str, str], ...]]

# In Meilisearch's order: its "Unknown field" messages list them so.
CREATE_FIELDS = ("description", "name", "uid", "actions", "indexes", "expiresAt")
PATCH_FIELDS = ("description", "name")
LIST_PARAMETERS = ("offset", "limit")
# Fields a key is born with and keeps: PATCH names them with their own codes.
IMMUTABLE_FIELDS = {
    "uid": "immutable_api_key_uid",
    "actions": "immutable_api_key_actions",
    "indexes": "immutable_api_key_indexes",
    "expiresAt": "immutable_api_key_expires_at",
    "createdAt": "immutable_api_key_created_at",
    "updatedAt": "immutable_api_key_updated_at",
}
_FIELD_CODES = {
    "description": "invalid_api_key_description",
    "name": "invalid_api_key_name",
    "uid": "invalid_api_key_uid",
    "actions": "invalid_api_key_actions",
    "indexes": "invalid_api_key_indexes",
    "expiresAt": "invalid_api_key_expires_at",
}

U32_MAX = 2**32 - 1
_USIZE = re.compile(r"\+?[0-9]+", re.ASCII)  # what Rust's `usize::from_str` accepts
# The four shapes Meilisearch tries for `expiresAt`: RFC 3339; date and time in UTC, with `T` or a space; a date.
_EXPIRES_AT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
    r"|[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2}))?",
    re.ASCII,
)
_EPOCH = date(1970, 1, 1).toordinal()


# -- reading bodies, as deserr words its errors -----------------------------------


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a positive integer" if value >= 0 else "a negative integer"
    if isinstance(value, float):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}[type(value)]


def _found(value) -> str:
    if value is None:
        return "null"
    return f"{_kind(value)}: `{json.dumps(value, ensure_ascii=False, separators=(',', ':'))}`"


def _wrong_type(code: str, location: str, expected: str, value) -> TaskHubError:
    where = f" at `{location}`" if location else ""
    return TaskHubError(code, f"Invalid value type{where}: expected {expected}, but found {_found(value)}")


def _distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit (optimal string alignment)."""
    previous, current = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, current = previous, current, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
    return current[len(b)]


def _did_you_mean(name: str, accepted: tuple[str, ...]) -> str:
    """deserr's hint: the closest accepted name within a typo budget that grows with the name's length."""
    budget = next((typos for limit, typos in ((3, 0), (7, 1), (12, 2), (17, 3), (24, 4)) if len(name) <= limit), 5)
    if budget == 0:
        return ""
    distance, best = min((_distance(name, known), known) for known in accepted)
    return f"did you mean `{best}`? " if distance <= budget else ""


def _unknown_field(name: str, accepted: tuple[str, ...]) -> TaskHubError:
    expected = ", ".join(f"`{known}`" for known in accepted)
    hint = _did_you_mean(name, accepted)
    return TaskHubError("bad_request", f"Unknown field `{name}`: {hint}expected one of {expected}")


def _not_json(name: str):
    raise ValueError(f"`{name}` is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        _not_json(text)
    return value


def _object(raw: bytes) -> dict:
    """The JSON object of a body; Meilisearch's payload errors otherwise."""
    text = enqueue.utf8(raw)
    if not text.strip():
        raise TaskHubError("missing_payload", "A json payload is missing.")
    try:
        body = json.loads(text, parse_constant=_not_json, parse_float=_finite)
        json.dumps(body, ensure_ascii=False).encode("utf-8")  # a lone surrogate (`"\ud800"`) is no text
    except (ValueError, RecursionError) as exc:
        raise TaskHubError("malformed_payload", f"The json payload provided is malformed. `{exc}`.") from None
    if not isinstance(body, dict):
        raise _wrong_type("bad_request", "", "an object", body)
    return body


def _text(name: str, value, *, nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise _wrong_type(_FIELD_CODES[name], f".{name}", "a string", value)
    return value


def _strings(name: str, value) -> list[str]:
    if not isinstance(value, list):
        raise _wrong_type(_FIELD_CODES[name], f".{name}", "an array", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _wrong_type(_FIELD_CODES[name], f".{name}[{i}]", "a string", item)
    return value


def _expires_at(value) -> timestamp_pb2.Timestamp | None:
    """A date-time as Meilisearch reads `expiresAt` (UTC unless an offset is given); null: never."""
    text = _text("expiresAt", value)
    if text is None:
        return None
    match = _EXPIRES_AT.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        y, mo, d, hh, mi, ss, fraction, sign, oh, om, hh2, mi2, ss2 = match.groups()
        day = date(int(y), int(mo), int(d)).toordinal() - _EPOCH
        hh, mi, ss = (int(v or 0) for v in ((hh, mi, ss) if hh is not None else (hh2, mi2, ss2)))
        offset = 0
        if sign is not None:
            if int(oh) > 23 or int(om) > 59:
                raise ValueError(text)
            offset = (int(oh) * 3600 + int(om) * 60) * (1 if sign == "+" else -1)
        if hh > 23 or mi > 59 or ss > 59:
            raise ValueError(text)
        nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
        return timestamp_pb2.Timestamp(seconds=day * 86_400 + hh * 3600 + mi * 60 + ss - offset, nanos=nanos)
    except ValueError:  # no such shape, or a day, month or hour that does not exist
        raise TaskHubError(
            "invalid_api_key_expires_at",
            f"Invalid value at `.expiresAt`: `{text}` is not a valid date. It should follow the RFC 3339 format to"
            " represents a date or datetime in the future or specified as a null value. e.g. 'YYYY-MM-DD' or"
            " 'YYYY-MM-DD HH:MM:SS'.",
        ) from None


def create_request(raw: bytes) -> kpb.CreateKeyRequest:
    """The CreateKeyRequest of a `POST /keys` body: `{name?, description?, uid?, actions, indexes, expiresAt}`."""
    body = _object(raw)
    request = kpb.CreateKeyRequest()
    for name, value in body.items():
        if name not in CREATE_FIELDS:
            raise _unknown_field(name, CREATE_FIELDS)
        if name in ("description", "name"):
            if (text := _text(name, value)) is not None:
                setattr(request, name, text)
        elif name == "uid":
            request.uid = _text(name, value, nullable=False)
        elif name in ("actions", "indexes"):
            getattr(request, name).extend(_strings(name, value))
        elif (expires_at := _expires_at(value)) is not None:
            request.expires_at.CopyFrom(expires_at)
    for name, code in (
        ("actions", "missing_api_key_actions"),
        ("indexes", "missing_api_key_indexes"),
        ("expiresAt", "missing_api_key_expires_at"),
    ):
        if name not in body:
            raise TaskHubError(code, f"Missing field `{name}`")
    return request


def update_request(uid_or_key: str, raw: bytes) -> kpb.UpdateKeyRequest:
    """The UpdateKeyRequest of a `PATCH /keys/{uid_or_key}` body: only `name` and `description` may change."""
    request = kpb.UpdateKeyRequest(key=uid_or_key)
    for name, value in _object(raw).items():
        if name in IMMUTABLE_FIELDS:
            raise TaskHubError(
                IMMUTABLE_FIELDS[name],
                f"Immutable field `{name}`: expected one of " + ", ".join(f"`{known}`" for known in PATCH_FIELDS),
            )
        if name not in PATCH_FIELDS:
            raise _unknown_field(name, PATCH_FIELDS)
        # Every field the body names is in the mask: null (left unset) clears it, as in Meilisearch.
        request.update_mask.paths.append(name)
        if (text := _text(name, value)) is not None:
            setattr(request, name, text)
    return request


def list_request(raw_query: str) -> kpb.ListKeysRequest:
    """`GET /keys?offset=&limit=`: both optional (0 and 20), as Meilisearch's `usize`s."""
    request = kpb.ListKeysRequest()
    for name, value in query.parameters(raw_query).items():
        if name not in LIST_PARAMETERS:
            expected = ", ".join(f"`{known}`" for known in LIST_PARAMETERS)
            raise TaskHubError("bad_request", f"Unknown parameter `{name}`: expected one of {expected}")
        if _USIZE.fullmatch(value) is None or int(value) >= 2**64:
            raise TaskHubError(
                f"invalid_api_key_{name}",
                f"Invalid value in parameter `{name}`: could not parse `{value}` as a positive integer",
            )
        # The server counts in u32: past that there is nothing to skip to, and no page is that long.
        setattr(request, name, min(int(value), U32_MAX))
    return request


# -- rendering ------------------------------------------------------------------


def key(message: kpb.ApiKey) -> dict:
    """The key object, in the order Meilisearch's `KeyView` serializes it."""
    return {
        "name": message.name if message.HasField("name") else None,
        "description": message.description if message.HasField("description") else None,
        "key": message.key,
        "uid": message.uid,
        "actions": list(message.actions),
        "indexes": list(message.indexes),
        "expiresAt": render.date(message.expires_at) if message.HasField("expires_at") else None,
        "createdAt": render.date(message.created_at),
        "updatedAt": render.date(message.updated_at),
    }


def page(message: kpb.ListKeysResponse) -> dict:
    """`GET /keys`: `{results, offset, limit, total}`, Meilisearch's pagination view."""
    return {
        "results": [key(k) for k in message.results],
        "offset": message.offset,
        "limit": message.limit,
        "total": message.total,
    }


# -- the routes -----------------------------------------------------------------


def uid_or_key(request: Request) -> str:
    """The path's uid or secret, a uid in the lower-case hyphenated form the server keeps.

    Meilisearch reads a uid in any UUID spelling (upper case, no hyphens, braces, `urn:uuid:`).
    """
    raw = request.path_params["uid_or_key"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return raw


def _stub(request: Request) -> tuple[key_service_pb2_grpc.KeyServiceStub, float]:
    backend = request.app.state.backend
    return backend.keys, backend.timeout


def routes(edge: Callable[[Handler], Handler], metadata: Metadata) -> list[Route]:
    """`/keys` and `/keys/{uid_or_key}`; `app` lends its error edge and credential forwarding."""

    async def list_keys(request: Request) -> Response:
        stub, timeout = _stub(request)
        message = list_request(request.scope.get("query_string", b"").decode("utf-8", "replace"))
        return JSONResponse(page(await stub.ListKeys(message, timeout=timeout, metadata=metadata(request))))

    async def create_key(request: Request) -> Response:
        stub, timeout = _stub(request)
        enqueue.require_json(request.headers.get("content-type"))
        message = create_request(await request.body())
        response = await stub.CreateKey(message, timeout=timeout, metadata=metadata(request))
        return JSONResponse(key(response.key), status_code=201)

    async def get_key(request: Request) -> Response:
        stub, timeout = _stub(request)
        message = kpb.GetKeyRequest(key=uid_or_key(request))
        return JSONResponse(key((await stub.GetKey(message, timeout=timeout, metadata=metadata(request))).key))

    async def update_key(request: Request) -> Response:
        stub, timeout = _stub(request)
        enqueue.require_json(request.headers.get("content-type"))
        message = update_request(uid_or_key(request), await request.body())
        return JSONResponse(key((await stub.UpdateKey(message, timeout=timeout, metadata=metadata(request))).key))

    async def delete_key(request: Request) -> Response:
        stub, timeout = _stub(request)
        message = kpb.DeleteKeyRequest(key=uid_or_key(request))
        await stub.DeleteKey(message, timeout=timeout, metadata=metadata(request))
        return Response(status_code=204)

    # One route per path, so a 405 lists every method of the path in `Allow`.
    @edge
    async def collection(request: Request) -> Response:
        return await (create_key if request.method == "POST" else list_keys)(request)

    @edge
    async def item(request: Request) -> Response:
        return await {"PATCH": update_key, "DELETE": delete_key}.get(request.method, get_key)(request)

    return [
        Route("/keys", collection, methods=["GET", "POST"]),
        Route("/keys/{uid_or_key}", item, methods=["GET", "PATCH", "DELETE"]),
    ]
