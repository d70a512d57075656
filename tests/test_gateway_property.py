"""Arbitrary requests never make the gateway answer 5xx, and every 4xx has the error shape.

Query strings go to the ASGI app as raw bytes (no client normalizes them first), in
front of a real gRPC server, on `GET /tasks`, `POST /tasks/cancel` and `DELETE /tasks`;
arbitrary bodies go to `POST /tasks`.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from gateway_bodies import ERROR_KEYS, LINK
from taskhub.gateway.app import create_app
from taskhub.gateway.query import LIST_PARAMETERS

ROUTES = [("GET", "/tasks"), ("POST", "/tasks/cancel"), ("DELETE", "/tasks")]

_NAMES = st.sampled_from([*LIST_PARAMETERS, "lol", "", "Uids", "uids[]", "%75ids"]) | st.text(max_size=8)
_WORDS = st.sampled_from(
    [
        "*",
        "",
        ",",
        "0",
        "1",
        "+7",
        "-1",
        "4294967295",
        "4294967296",
        "99999999999999999999",
        "enqueued",
        "SUCCEEDED",
        "taskCancelation",
        "movies",
        "the good doggo",
        "2021-12-03",
        "2021-12-03T23:45:23Z",
        "2021-12-03T23:45:23.123456789%2B01:00",
        "9999-12-31",
        "0001-01-01T00:00:00%2B23:59",
        "0000-01-01",
        "true",
        "false",
        "%",
        "%zz",
        "%00",
        "%FF",
        "é",
        "\x00",
        "\ud7ff",
        "a" * 401,
    ]
)
_VALUES = st.lists(_WORDS | st.text(max_size=10), max_size=4).map(",".join)
_PAIRS = st.lists(st.tuples(_NAMES, _VALUES), max_size=5).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
)
QUERIES = _PAIRS | st.binary(max_size=40)


_TYPES = st.sampled_from(
    [
        "documentAdditionOrUpdate",
        "documentDeletion",
        "indexCreation",
        "indexUpdate",
        "indexDeletion",
        "indexSwap",
        "settingsUpdate",
        "dumpCreation",
        "snapshotCreation",
        "taskCancelation",
        "DUMPCREATION",
        "doggo",
    ]
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
_DETAIL_KEYS = st.sampled_from(
    [
        "receivedDocuments",
        "indexedDocuments",
        "providedIds",
        "originalFilter",
        "primaryKey",
        "swaps",
        "dumpUid",
        "rankingRules",
    ]
) | st.text(max_size=6)
_BODIES = st.fixed_dictionaries(
    {"type": _TYPES | _JSON},
    optional={
        "indexUid": st.sampled_from(["movies", "", "the good doggo", None]) | _JSON,
        "details": st.dictionaries(_DETAIL_KEYS, _JSON, max_size=3) | _JSON,
        "extra": _JSON,
    },
)
BODIES = _BODIES.map(lambda body: json.dumps(body).encode()) | st.binary(max_size=40)


def _check_answer(status: int, body: bytes, *allowed: int) -> None:
    assert status in allowed, (status, body)
    if status >= 400:
        error = json.loads(body)
        assert list(error) == ERROR_KEYS
        assert error["type"] == "invalid_request" and error["link"] == LINK + error["code"]


async def call(app, method: str, path: str, query: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One raw ASGI request; answers the status and the body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"gateway"), (b"content-type", b"application/json")],
        "server": ("gateway", 80),
        "client": ("127.0.0.1", 1),
    }
    messages = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=QUERIES)
async def test_any_query_string_is_answered_without_a_5xx(service, query):
    app = create_app(service.grpc_target)
    async with app.router.lifespan_context(app):
        for method, path in ROUTES:
            status, body = await call(app, method, path, query)
            _check_answer(status, body, 200, 202, 400)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
async def test_any_enqueue_body_is_answered_without_a_5xx(service, body):
    app = create_app(service.grpc_target)
    async with app.router.lifespan_context(app):
        status, answer = await call(app, "POST", "/tasks", b"", body)
        _check_answer(status, answer, 202, 400)
