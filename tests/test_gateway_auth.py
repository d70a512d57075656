"""Auth over HTTP: every gateway route against every kind of credential, and index scopes that hide tasks.

The gateway forwards `Authorization` as gRPC metadata and the server decides; these
tests hold the HTTP answers to SPEC §3's bodies. The service runs with a master key
and the fake clock (`clock.now` moves to expire a key); keys are made with POST /keys.
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

import pytest

from conftest import MASTER_KEY
from gateway_bodies import SUMMARY_KEYS, error
from helpers import finish, start

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
MISSING = error(
    "missing_authorization_header",
    "The Authorization header is missing. It must use the bearer authorization method.",
    "auth",
)
INVALID = error("invalid_api_key", "The provided API key is invalid.", "auth")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def rfc3339(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def make_key(http, actions: list[str], indexes: list[str], expires_at: str | None = None) -> dict:
    response = await http.post(
        "/keys", json={"actions": actions, "indexes": indexes, "expiresAt": expires_at}, headers=MASTER
    )
    assert response.status_code == 201, response.text
    return response.json()


async def enqueue(http, type_: str, index_uid: str | None = None, headers=MASTER) -> int:
    response = await http.post("/tasks", json={"type": type_, "indexUid": index_uid}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["taskUid"]


@pytest.fixture
async def keys(secured_http, clock):
    """One key of each kind, and tasks 0 (movies), 1 (books) and 2 (a global dump); the expiring key has expired."""
    http = secured_http
    made = {
        "all": await make_key(http, ["*"], ["*"]),
        "get_only": await make_key(http, ["tasks.get"], ["*"]),
        "enqueue_only": await make_key(http, ["tasks.enqueue"], ["*"]),
        "books": await make_key(http, ["*"], ["books"]),
        "expiring": await make_key(http, ["*"], ["*"], expires_at=rfc3339(clock.now + 60_000_000)),
    }
    assert [await enqueue(http, "indexCreation", index) for index in ("movies", "books")] == [0, 1]
    assert await enqueue(http, "dumpCreation") == 2
    clock.now += 61_000_000
    return {name: key["key"] for name, key in made.items()} | {"books_uid": made["books"]["uid"]}


NO_WEBHOOK = "00000000-0000-0000-0000-000000000001"
# Each route: (method, path, JSON body, the key that lacks its action).
ROUTES = {
    "list tasks": ("GET", "/tasks", None, "enqueue_only"),
    "get task": ("GET", "/tasks/0", None, "enqueue_only"),
    "cancel tasks": ("POST", "/tasks/cancel?indexUids=movies", None, "get_only"),
    "delete tasks": ("DELETE", "/tasks?indexUids=movies", None, "get_only"),
    "requeue tasks": ("POST", "/tasks/requeue?indexUids=movies", None, "get_only"),
    "enqueue task": ("POST", "/tasks", {"type": "indexUpdate", "indexUid": "movies"}, "get_only"),
    # A dump or a snapshot needs its own action: `tasks.enqueue` is not enough.
    "create dump": ("POST", "/dumps", None, "enqueue_only"),
    "create snapshot": ("POST", "/snapshots", None, "enqueue_only"),
    "get version": ("GET", "/version", None, "get_only"),
    # Metrics name every index: a key needs `metrics.get` on all of them (`*`).
    "get metrics": ("GET", "/metrics", None, "get_only"),
    # Batches read as tasks do (`tasks.get`); the fixture ran none, so a batch uid is unknown to every key.
    "list batches": ("GET", "/batches", None, "enqueue_only"),
    "get batch": ("GET", "/batches/0", None, "enqueue_only"),
    # The workers in view read as tasks do too.
    "list leases": ("GET", "/leases", None, "enqueue_only"),
    "get activity": ("GET", "/activity", None, "enqueue_only"),
    # Server-sent events: refusals are plain JSON answers before any stream starts.
    "watch tasks": ("GET", "/tasks/events", None, "enqueue_only"),
    "watch task": ("GET", "/tasks/0/events", None, "enqueue_only"),
    # Keys are the master key's alone: an API key with every action is refused too.
    "list keys": ("GET", "/keys", None, "all"),
    "create key": ("POST", "/keys", {"actions": ["*"], "indexes": ["*"], "expiresAt": None}, "all"),
    "get key": ("GET", "/keys/{books_uid}", None, "all"),
    "update key": ("PATCH", "/keys/{books_uid}", {"name": "renamed"}, "all"),
    "delete key": ("DELETE", "/keys/{books_uid}", None, "all"),
    # Webhooks belong to no index: a key scoped to some indexes manages them when it has the action.
    "list webhooks": ("GET", "/webhooks", None, "get_only"),
    "create webhook": ("POST", "/webhooks", {"url": "https://example.com/hook"}, "get_only"),
    "get webhook": ("GET", f"/webhooks/{NO_WEBHOOK}", None, "get_only"),
    "update webhook": ("PATCH", f"/webhooks/{NO_WEBHOOK}", {"url": "https://example.com/2"}, "get_only"),
    "delete webhook": ("DELETE", f"/webhooks/{NO_WEBHOOK}", None, "get_only"),
}
MALFORMED = [
    {"Authorization": "Basic eDp5"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": MASTER_KEY},
    {"Authorization": b"Bearer \xe9t\xe9"},
]


def test_the_matrix_covers_every_route():
    from starlette.routing import Route

    from taskhub.gateway.app import ROUTES as SERVED

    # Open to all: /health as in Meilisearch, the OpenAPI document, and the dashboard page and the redirect
    # to it, which carry no data and must load without a key since the page asks for one
    # (test_the_dashboard_loads_without_a_key checks them).
    open_routes = {("/health", "GET"), ("/openapi.json", "GET"), ("/dashboard", "GET"), ("/", "GET")}
    served = {
        (route.path, method)
        for route in SERVED
        if isinstance(route, Route)
        for method in route.methods
        if method != "HEAD"
    } - open_routes
    covered = {
        (
            path.split("?")[0]
            .replace("/tasks/0", "/tasks/{uid}")
            .replace("/batches/0", "/batches/{uid}")
            .replace("{books_uid}", "{uid_or_key}")
            .replace(NO_WEBHOOK, "{uuid}"),
            method,
        )
        for method, path, _, _ in ROUTES.values()
    }
    assert covered == served


@pytest.mark.parametrize("route", ROUTES)
async def test_every_route_answers_spec_bodies_for_every_credential(secured_http, secured_service, keys, route):
    http = secured_http
    method, path, body, lacking = ROUTES[route]
    path = path.format(books_uid=keys["books_uid"])

    async def call(headers: dict):
        return await http.request(method, path, json=body, headers=headers)

    for headers in ({}, *MALFORMED):
        response = await call(headers)
        assert (response.status_code, response.json()) == (401, MISSING), headers
    for key in ("not-a-key", keys["expiring"], keys[lacking]):
        response = await call(bearer(key))
        assert (response.status_code, response.json()) == (403, INVALID), key

    if route == "watch tasks":
        return  # a good key opens an endless stream: tests/test_gateway_events.py follows those
    # A key scoped to `books` sees nothing of `movies` (nor global tasks) and may enqueue nothing there.
    response = await call(bearer(keys["books"]))
    scoped = {
        "get version": (200, "a version belongs to no index"),
        "list tasks": (200, [1]),
        "list batches": (200, []),
        "get batch": (404, error("batch_not_found", "Batch `0` not found.")),
        "get task": (404, error("task_not_found", "Task `0` not found.")),
        "watch task": (404, error("task_not_found", "Task `0` not found.")),
        "cancel tasks": (202, "taskCancelation"),
        "delete tasks": (202, "taskDeletion"),
        "requeue tasks": (202, {"results": []}),
        "list leases": (200, []),
        "get activity": (200, ["books"]),  # its index's counts only, no global task
        "list webhooks": (200, {"results": []}),
        "create webhook": (201, "https://example.com/hook"),
        **dict.fromkeys(
            ("get webhook", "update webhook", "delete webhook"),
            (404, error("webhook_not_found", f"Webhook `{NO_WEBHOOK}` not found.")),
        ),
    }.get(route, (403, INVALID))
    got = response.json()
    if route in ("list tasks", "list batches"):
        got = [item["uid"] for item in got["results"]]
    elif route == "list leases":
        got = got["results"]
    elif route == "get activity":
        got = [entry["indexUid"] for entry in got["indexes"]]
    elif route == "get version":
        got = "a version belongs to no index" if list(got) == ["commitSha", "commitDate", "pkgVersion"] else got
    elif route in ("cancel tasks", "delete tasks"):
        got = got["type"]
    elif route == "create webhook":
        got = got["url"]
    assert (response.status_code, got) == scoped
    if route in ("cancel tasks", "delete tasks"):
        await secured_service.scheduler.tick()
        done = (await http.get(f"/tasks/{response.json()['taskUid']}", headers=MASTER)).json()
        assert done["details"]["matchedTasks"] == 0  # movies' tasks were out of its sight

    if route == "watch task":
        return
    response = await call(MASTER)
    assert response.status_code == {
        "list tasks": 200,
        "list batches": 200,
        "list leases": 200,
        "get activity": 200,
        "get batch": 404,
        "get task": 200,
        "get version": 200,
        "get metrics": 200,
        "create key": 201,
        "list keys": 200,
        "get key": 200,
        "update key": 200,
        "delete key": 204,
        "list webhooks": 200,
        "create webhook": 201,
        "get webhook": 404,
        "update webhook": 404,
        "delete webhook": 404,
    }.get(route, 202)
    if route == "list tasks":
        assert [task["uid"] for task in response.json()["results"]] == [2, 1, 0]
    elif route == "get task":
        assert (response.json()["uid"], response.json()["indexUid"]) == (0, "movies")
    elif route == "requeue tasks":
        assert response.json() == {"results": []}  # nothing failed nor was canceled
    elif response.status_code == 202:
        assert list(response.json()) == SUMMARY_KEYS


async def test_health_and_the_openapi_document_need_no_key(secured_http):
    response = await secured_http.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "available"})
    assert (await secured_http.get("/openapi.json")).status_code == 200


async def test_the_dashboard_loads_without_a_key(secured_http):
    assert (await secured_http.get("/dashboard")).status_code == 200
    assert (await secured_http.get("/dashboard/static/app.js")).status_code == 200
    response = await secured_http.get("/")
    assert (response.status_code, response.headers["location"]) == (307, "/dashboard")
    # The page holds no data: what it shows comes from the API, which still wants the key.
    assert (await secured_http.get("/tasks")).status_code == 401


async def test_a_key_works_until_it_expires(secured_http, clock):
    key = (await make_key(secured_http, ["tasks.get"], ["*"], expires_at=rfc3339(clock.now + 60_000_000)))["key"]
    assert (await secured_http.get("/tasks", headers=bearer(key))).status_code == 200
    clock.now += 61_000_000
    response = await secured_http.get("/tasks", headers=bearer(key))
    assert (response.status_code, response.json()) == (403, INVALID)
    # The master key still sees the expired key.
    assert (await secured_http.get(f"/keys/{key}", headers=MASTER)).status_code == 200


# -- index scopes ------------------------------------------------------------------

INDEXES = {0: "movies", 1: "books", 2: "movies_old", 3: None, 4: "books", 5: "movies", 6: None, 7: None}


@pytest.fixture
async def history(secured_http, secured_service):
    """Tasks of three indexes and global ones, in every status, some canceled by global cancelations.

    0 movies succeeded, 1 books failed, 2 movies_old enqueued, 3 dump succeeded, 4 books and 5 movies
    canceled by 6 and 7, both global taskCancelations.
    """
    http, service = secured_http, secured_service
    for uid in (0, 1, 2):
        await enqueue(http, "indexCreation", INDEXES[uid])
    # 0 and 1 run before the dump is enqueued: no worker gets a lease while a server task waits.
    for uid in (0, 1):
        await start(service, uid)
    await finish(service, 0)
    await finish(
        service,
        1,
        error={
            "message": "boom",
            "code": "internal",
            "type": "internal",
            "link": "https://docs.meilisearch.com/errors#internal",
        },
    )
    await enqueue(http, "dumpCreation")
    await enqueue(http, "indexCreation", "books")
    await enqueue(http, "indexCreation", "movies")
    assert (await http.post("/tasks/cancel?indexUids=books&statuses=enqueued", headers=MASTER)).status_code == 202
    assert (await http.post("/tasks/cancel?uids=5", headers=MASTER)).status_code == 202
    await service.scheduler.tick()
    await service.scheduler.tick()
    tasks = (await http.get("/tasks", headers=MASTER)).json()["results"]
    assert [(t["uid"], t["indexUid"], t["status"], t["canceledBy"]) for t in tasks] == [
        (7, None, "succeeded", None),
        (6, None, "succeeded", None),
        (5, "movies", "canceled", 7),
        (4, "books", "canceled", 6),
        (3, None, "succeeded", None),
        (2, "movies_old", "enqueued", None),
        (1, "books", "failed", None),
        (0, "movies", "succeeded", None),
    ]
    return {
        "movies": (await make_key(http, ["tasks.*"], ["movies"]))["key"],
        "mov*": (await make_key(http, ["tasks.*"], ["mov*"]))["key"],
    }


QUERIES = [
    "",
    "limit=1",
    "limit=2&from=5",
    "from=3",
    "reverse=true",
    "reverse=true&from=1&limit=2",
    "limit=0",
    "uids=1,4",
    "uids=0,1,2,3",
    "uids=*",
    "uids=",
    "indexUids=books",
    "indexUids=books,movies",
    "indexUids=*",
    "indexUids=movies_old",
    "statuses=*",
    "statuses=canceled",
    "statuses=succeeded,enqueued",
    "statuses=failed",
    "types=dumpCreation,taskCancelation",
    "types=*",
    "types=indexCreation",
    "canceledBy=6",
    "canceledBy=6,7",
    "afterEnqueuedAt=2000-01-01",
    "beforeEnqueuedAt=2100-01-01&statuses=succeeded",
    "afterStartedAt=2000-01-01",
    "beforeFinishedAt=2100-01-01",
    "indexUids=books&statuses=canceled&types=indexCreation&canceledBy=6",
]


def expected_page(all_matching: list[dict], visible, parameters: dict[str, str]) -> dict:
    """What a scoped key must get: the master's answer narrowed to its indexes, then paged."""
    reverse = parameters.get("reverse") == "true"
    limit = int(parameters.get("limit", 20))
    seen = [t for t in all_matching if visible(t["indexUid"])]
    after_from = seen
    if "from" in parameters:
        start_at = int(parameters["from"])
        after_from = [t for t in seen if (t["uid"] >= start_at if reverse else t["uid"] <= start_at)]
    results = after_from[:limit]
    return {
        "results": results,
        "total": len(seen),
        "limit": limit,
        "from": results[0]["uid"] if results else None,
        "next": after_from[limit]["uid"] if len(after_from) > limit else None,
    }


@pytest.mark.parametrize(
    ("scope", "visible"),
    [
        ("movies", lambda index: index == "movies"),
        ("mov*", lambda index: index is not None and index.startswith("mov")),
    ],
)
async def test_no_task_of_another_index_is_ever_visible(secured_http, history, scope, visible):
    http = secured_http
    hidden_somewhere = 0
    for query in QUERIES:
        parameters = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        filters = {k: v for k, v in parameters.items() if k not in ("limit", "from")}
        everything = await http.get("/tasks?" + urllib.parse.urlencode({**filters, "limit": 1000}), headers=MASTER)
        matching = everything.json()["results"]
        hidden_somewhere += any(not visible(t["indexUid"]) for t in matching)
        response = await http.get(f"/tasks?{query}", headers=bearer(history[scope]))
        assert response.status_code == 200, query
        assert response.json() == expected_page(matching, visible, parameters), query
    assert hidden_somewhere > len(QUERIES) // 2  # the queries do reach hidden tasks

    for uid, index in INDEXES.items():
        response = await http.get(f"/tasks/{uid}", headers=bearer(history[scope]))
        if visible(index):
            assert (response.status_code, response.json()["uid"]) == (200, uid)
        else:
            assert (response.status_code, response.json()) == (404, error("task_not_found", f"Task `{uid}` not found."))


async def test_scoped_cancel_and_delete_touch_only_visible_tasks(secured_http, secured_service, history):
    http, service = secured_http, secured_service
    # Only task 2 (movies_old) is still enqueued: the `movies` key cannot match it, the `mov*` key can.
    for scope, matched in (("movies", 0), ("mov*", 1)):
        response = await http.post("/tasks/cancel?statuses=enqueued,processing", headers=bearer(history[scope]))
        summary = response.json()
        assert (response.status_code, summary["indexUid"], summary["type"]) == (202, None, "taskCancelation")
        # The cancelation is a global task: its own key cannot see it.
        assert (await http.get(f"/tasks/{summary['taskUid']}", headers=bearer(history[scope]))).status_code == 404
        await service.scheduler.tick()
        done = (await http.get(f"/tasks/{summary['taskUid']}", headers=MASTER)).json()
        assert (done["details"]["matchedTasks"], done["details"]["canceledTasks"]) == (matched, matched)

    response = await http.delete("/tasks?statuses=*", headers=bearer(history["movies"]))
    deletion = response.json()["taskUid"]
    await service.scheduler.tick()
    done = (await http.get(f"/tasks/{deletion}", headers=MASTER)).json()
    assert (done["details"]["matchedTasks"], done["details"]["deletedTasks"]) == (2, 2)
    left = [t["uid"] for t in (await http.get("/tasks?limit=1000", headers=MASTER)).json()["results"]]
    assert 0 not in left and 5 not in left and {1, 2, 3, 4, 6, 7} <= set(left)

    response = await http.post(
        "/tasks", json={"type": "indexCreation", "indexUid": "books"}, headers=bearer(history["mov*"])
    )
    assert (response.status_code, response.json()) == (403, INVALID)
    response = await http.post(
        "/tasks", json={"type": "indexCreation", "indexUid": "movies_new"}, headers=bearer(history["mov*"])
    )
    assert (response.status_code, response.json()["indexUid"]) == (202, "movies_new")
