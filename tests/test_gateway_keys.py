"""The `/keys` routes: Meilisearch's key objects, pages and errors, as whole bodies."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from conftest import MASTER_KEY
from gateway_bodies import at, error

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
UID = "01b4bc42-eb33-4041-b481-254d00cce834"
KEY_KEYS = ["name", "description", "key", "uid", "actions", "indexes", "expiresAt", "createdAt", "updatedAt"]
CREATE_FIELDS = "`description`, `name`, `uid`, `actions`, `indexes`, `expiresAt`"
A_KEY = {"actions": ["tasks.get"], "indexes": ["movies"], "expiresAt": None}


def secret(uid: str) -> str:
    """A key's secret: HMAC-SHA256(master key, uid), as Meilisearch derives it."""
    return hmac.new(MASTER_KEY.encode(), uid.encode(), hashlib.sha256).hexdigest()


async def create(http, **body):
    response = await http.post("/keys", json={**A_KEY, **body}, headers=MASTER)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_key_is_created_read_listed_renamed_and_deleted(secured_http):
    http = secured_http
    body = {
        "name": "ci",
        "description": "for CI",
        "uid": UID,
        "actions": ["tasks.get", "tasks.cancel"],
        "indexes": ["movies", "books*"],
        "expiresAt": "2042-04-02T00:42:42Z",
    }
    response = await http.post("/keys", json=body, headers=MASTER)
    expected = {
        "name": "ci",
        "description": "for CI",
        "key": secret(UID),
        "uid": UID,
        "actions": ["tasks.get", "tasks.cancel"],
        "indexes": ["movies", "books*"],
        "expiresAt": "2042-04-02T00:42:42.000000Z",
        "createdAt": at(1),
        "updatedAt": at(1),
    }
    assert (response.status_code, response.json()) == (201, expected)
    assert list(response.json()) == KEY_KEYS

    for uid_or_key in (UID, secret(UID)):
        response = await http.get(f"/keys/{uid_or_key}", headers=MASTER)
        assert (response.status_code, response.json()) == (200, expected)
    response = await http.get("/keys", headers=MASTER)
    assert (response.status_code, response.json()) == (
        200,
        {"results": [expected], "offset": 0, "limit": 20, "total": 1},
    )
    assert list(response.json()) == ["results", "offset", "limit", "total"]

    response = await http.patch(f"/keys/{secret(UID)}", json={"name": "renamed"}, headers=MASTER)
    renamed = {**expected, "name": "renamed", "updatedAt": at(2)}
    assert (response.status_code, response.json()) == (200, renamed)
    response = await http.patch(f"/keys/{UID}", json={"description": "", "name": "again"}, headers=MASTER)
    assert response.json() == {**renamed, "name": "again", "description": "", "updatedAt": at(3)}
    # null clears a field, as in Meilisearch; a field the body leaves out stays.
    response = await http.patch(f"/keys/{UID}", json={"name": None}, headers=MASTER)
    assert response.json() == {**renamed, "name": None, "description": "", "updatedAt": at(4)}

    response = await http.delete(f"/keys/{UID}", headers=MASTER)
    assert (response.status_code, response.content) == (204, b"")
    response = await http.get(f"/keys/{UID}", headers=MASTER)
    assert (response.status_code, response.json()) == (404, error("api_key_not_found", f"API key `{UID}` not found."))
    # The deleted key stops working at once.
    response = await http.get("/tasks", headers={"Authorization": f"Bearer {secret(UID)}"})
    assert (response.status_code, response.json()["code"]) == (403, "invalid_api_key")


async def test_a_minimal_key_has_null_name_description_and_expiry(secured_http):
    created = await create(secured_http)
    assert {k: created[k] for k in ("name", "description", "actions", "indexes", "expiresAt")} == {
        "name": None,
        "description": None,
        "actions": ["tasks.get"],
        "indexes": ["movies"],
        "expiresAt": None,
    }
    assert created["key"] == secret(created["uid"]) and len(created["uid"]) == 36


async def test_keys_are_listed_newest_first_by_offset_and_limit(secured_http):
    uids = [(await create(secured_http, name=f"k{i}"))["uid"] for i in range(3)]
    response = await secured_http.get("/keys?offset=1&limit=1", headers=MASTER)
    page = response.json()
    assert ([k["uid"] for k in page["results"]], page["offset"], page["limit"], page["total"]) == ([uids[1]], 1, 1, 3)
    page = (await secured_http.get("/keys?limit=0", headers=MASTER)).json()
    assert page == {"results": [], "offset": 0, "limit": 0, "total": 3}
    page = (await secured_http.get("/keys?offset=99999999999", headers=MASTER)).json()
    assert (page["results"], page["total"]) == ([], 3)
    page = (await secured_http.get("/keys?offset=%2B1", headers=MASTER)).json()  # `+1`, as Rust parses it
    assert [k["uid"] for k in page["results"]] == uids[1::-1]


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("2042-04-02T00:42:42Z", "2042-04-02T00:42:42.000000Z"),
        ("2042-04-02T02:42:42.5+02:00", "2042-04-02T00:42:42.500000Z"),
        ("2042-04-02t00:42:42.123456789z", "2042-04-02T00:42:42.123456Z"),
        ("2042-04-02T00:42:42", "2042-04-02T00:42:42.000000Z"),
        ("2042-04-02 00:42:42", "2042-04-02T00:42:42.000000Z"),
        ("2042-04-02", "2042-04-02T00:00:00.000000Z"),
    ],
)
async def test_expires_at_takes_meilisearchs_four_shapes(secured_http, value, stored):
    assert (await create(secured_http, expiresAt=value))["expiresAt"] == stored


def _type(code: str, where: str, expected: str, found: str) -> dict:
    return error(code, f"Invalid value type at `{where}`: expected {expected}, but found {found}")


def _not_a_date(value: str) -> dict:
    return error(
        "invalid_api_key_expires_at",
        f"Invalid value at `.expiresAt`: `{value}` is not a valid date. It"
        " should follow the RFC 3339 format to represents a date or datetime in the future or specified"
        " as a null value. e.g. 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'.",
    )


BAD_CREATIONS = [
    (b"", error("missing_payload", "A json payload is missing.")),
    (b"[]", error("bad_request", "Invalid value type: expected an object, but found an array: `[]`")),
    (b'{"name": NaN}', None),  # malformed_payload, with the parser's own words
    (b'{"name": "\\ud800"}', None),
    (
        {"description": ["doggo"]},
        _type("invalid_api_key_description", ".description", "a string", 'an array: `["doggo"]`'),
    ),
    ({"name": 42}, _type("invalid_api_key_name", ".name", "a string", "a positive integer: `42`")),
    ({"uid": None}, _type("invalid_api_key_uid", ".uid", "a string", "null")),
    ({"actions": "doggo"}, _type("invalid_api_key_actions", ".actions", "an array", 'a string: `"doggo"`')),
    (
        {"actions": ["tasks.get", -1]},
        _type("invalid_api_key_actions", ".actions[1]", "a string", "a negative integer: `-1`"),
    ),
    ({"indexes": {"a": 1}}, _type("invalid_api_key_indexes", ".indexes", "an array", 'an object: `{"a":1}`')),
    ({"expiresAt": 1.5}, _type("invalid_api_key_expires_at", ".expiresAt", "a string", "a number: `1.5`")),
    ({"expiresAt": "doggo"}, _not_a_date("doggo")),
    ({"expiresAt": "2042-02-30"}, _not_a_date("2042-02-30")),
    ({"expiresAt": "2042-04-02T24:00:00Z"}, _not_a_date("2042-04-02T24:00:00Z")),
    ({"expiresAt": "2042-04-02 00:42:42Z"}, _not_a_date("2042-04-02 00:42:42Z")),
    (
        {"expires_at": None},
        error("bad_request", f"Unknown field `expires_at`: did you mean `expiresAt`? expected one of {CREATE_FIELDS}"),
    ),
    ({"doggo": "bork"}, error("bad_request", f"Unknown field `doggo`: expected one of {CREATE_FIELDS}")),
    ({"indexes": ["doggo"], "expiresAt": None}, error("missing_api_key_actions", "Missing field `actions`")),
    ({"actions": ["*"], "expiresAt": None}, error("missing_api_key_indexes", "Missing field `indexes`")),
    ({"actions": ["*"], "indexes": ["*"]}, error("missing_api_key_expires_at", "Missing field `expiresAt`")),
    # The server's checks: known actions, index patterns, UUIDs, a date in the future, a free uid.
    (
        {**A_KEY, "actions": ["tasks.fly"]},
        error(
            "invalid_api_key_actions",
            "Unknown value `tasks.fly` at `.actions`:"
            " expected one of `tasks.get`, `tasks.enqueue`, `tasks.cancel`, `tasks.delete`, `tasks.requeue`, `tasks.*`,"
            " `dumps.create`, `dumps.*`, `snapshots.create`, `snapshots.*`, `version`, `metrics.get`, `metrics.*`, `workers.*`,"
            " `webhooks.get`, `webhooks.create`, `webhooks.update`, `webhooks.delete`, `webhooks.*`, `*`.",
        ),
    ),
    (
        {**A_KEY, "indexes": ["good doggo"]},
        error(
            "invalid_api_key_indexes",
            "`good doggo` is not a valid index uid pattern. Use an index uid, a prefix ending in `*`, or `*`.",
        ),
    ),
    ({**A_KEY, "uid": "doggo"}, error("invalid_api_key_uid", "`doggo` is not a valid UUID.")),
    (
        {**A_KEY, "expiresAt": "2023-11-14"},
        error("invalid_api_key_expires_at", "`expiresAt` (2023-11-14T00:00:00.000000Z) is in the past."),
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD_CREATIONS)
async def test_bad_creations_get_meilisearchs_errors(secured_http, body, expected):
    if isinstance(body, bytes):
        response = await secured_http.post(
            "/keys", content=body, headers={**MASTER, "content-type": "application/json"}
        )
    else:
        response = await secured_http.post("/keys", json=body, headers=MASTER)
    assert response.status_code == 400
    if expected is None:
        assert response.json()["code"] == "malformed_payload"
        assert response.json()["message"].startswith("The json payload provided is malformed. `")
    else:
        assert response.json() == expected
    assert (await secured_http.get("/keys", headers=MASTER)).json()["total"] == 0


async def test_a_taken_uid_is_a_conflict(secured_http):
    await create(secured_http, uid=UID)
    response = await secured_http.post("/keys", json={**A_KEY, "uid": UID}, headers=MASTER)
    assert (response.status_code, response.json()) == (
        409,
        error("api_key_already_exists", f"An API key with uid `{UID}` already exists."),
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        *[
            (
                {field: "doggo"},
                error(f"immutable_api_key_{code}", f"Immutable field `{field}`: expected one of `description`, `name`"),
            )
            for field, code in (
                ("uid", "uid"),
                ("actions", "actions"),
                ("indexes", "indexes"),
                ("expiresAt", "expires_at"),
                ("createdAt", "created_at"),
                ("updatedAt", "updated_at"),
            )
        ],
        ({"doggo": "bork"}, error("bad_request", "Unknown field `doggo`: expected one of `description`, `name`")),
        ({"key": "x"}, error("bad_request", "Unknown field `key`: expected one of `description`, `name`")),
        ({"name": ["doggo"]}, _type("invalid_api_key_name", ".name", "a string", 'an array: `["doggo"]`')),
        (
            {"description": False},
            _type("invalid_api_key_description", ".description", "a string", "a boolean: `false`"),
        ),
        (
            {"name": "fine", "actions": ["*"]},
            error("immutable_api_key_actions", "Immutable field `actions`: expected one of `description`, `name`"),
        ),
    ],
)
async def test_bad_updates_get_meilisearchs_errors_and_change_nothing(secured_http, body, expected):
    created = await create(secured_http)
    response = await secured_http.patch(f"/keys/{created['uid']}", json=body, headers=MASTER)
    assert (response.status_code, response.json()) == (400, expected)
    assert (await secured_http.get(f"/keys/{created['uid']}", headers=MASTER)).json() == created


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "offset=doggo",
            error(
                "invalid_api_key_offset",
                "Invalid value in parameter `offset`: could not parse `doggo` as a positive integer",
            ),
        ),
        (
            "limit=-1",
            error(
                "invalid_api_key_limit",
                "Invalid value in parameter `limit`: could not parse `-1` as a positive integer",
            ),
        ),
        ("doggo=no_limit", error("bad_request", "Unknown parameter `doggo`: expected one of `offset`, `limit`")),
    ],
)
async def test_bad_list_queries_get_meilisearchs_errors(secured_http, query, expected):
    response = await secured_http.get(f"/keys?{query}", headers=MASTER)
    assert (response.status_code, response.json()) == (400, expected)


@pytest.mark.parametrize("spelling", [UID.upper(), UID.replace("-", ""), "{" + UID + "}", "urn:uuid:" + UID])
async def test_a_uid_is_read_in_any_uuid_spelling(secured_http, spelling):
    created = await create(secured_http, uid=UID)
    response = await secured_http.get(f"/keys/{spelling}", headers=MASTER)
    assert (response.status_code, response.json()) == (200, created)
    response = await secured_http.patch(f"/keys/{spelling}", json={"name": "x"}, headers=MASTER)
    assert (response.status_code, response.json()["name"]) == (200, "x")
    assert (await secured_http.delete(f"/keys/{spelling}", headers=MASTER)).status_code == 204


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_an_unknown_key_is_not_found(secured_http, method):
    response = await secured_http.request(
        method, "/keys/doggo", json={"name": "x"} if method == "PATCH" else None, headers=MASTER
    )
    assert (response.status_code, response.json()) == (404, error("api_key_not_found", "API key `doggo` not found."))


async def test_keys_routes_list_their_methods_when_one_is_not_allowed(secured_http):
    response = await secured_http.delete("/keys", headers=MASTER)
    assert (response.status_code, set(response.headers["allow"].split(", "))) == (405, {"HEAD", "GET", "POST"})
    response = await secured_http.post(f"/keys/{UID}", headers=MASTER)
    assert (response.status_code, set(response.headers["allow"].split(", "))) == (
        405,
        {"HEAD", "GET", "PATCH", "DELETE"},
    )


NO_MASTER_KEY = error(
    "missing_master_key",
    "taskhub is running without a master key. To access this API endpoint, you must have set a master key at launch.",
    "auth",
)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/keys", None),
        ("POST", "/keys", A_KEY),
        ("GET", f"/keys/{UID}", None),
        ("PATCH", f"/keys/{UID}", {"name": "x"}),
        ("DELETE", f"/keys/{UID}", None),
    ],
)
async def test_without_a_master_key_keys_routes_answer_missing_master_key(http, method, path, body):
    for headers in ({}, MASTER):
        response = await http.request(method, path, json=body, headers=headers)
        assert (response.status_code, response.json()) == (401, NO_MASTER_KEY)
