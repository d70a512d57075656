"""The `/webhooks` routes: Meilisearch's webhook objects and errors (v1.17+), as whole bodies, through the gateway.

The messages and codes are Meilisearch's (read in its routes/webhooks.rs and tests/tasks/webhook.rs).
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from conftest import MASTER_KEY, gateway_client
from gateway_bodies import error
from taskhub.server import app

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
NIL = "00000000-0000-0000-0000-000000000000"
FIELDS = "`url`, `headers`, `secret`"


@pytest.fixture
async def reserved_http(config, clock):
    """A gateway whose server has the reserved webhook of `--task-webhook-url` (no background work)."""
    config = dataclasses.replace(
        config,
        task_webhook_url="https://example-cli.com/",
        task_webhook_authorization_header="Bearer a-secret-token",
    )
    running = await app.start(config, background=False, clock=clock)
    async with gateway_client(running.grpc_target) as client:
        yield client
    await running.stop(0)


async def create(http, body: dict) -> dict:
    response = await http.post("/webhooks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_webhook_is_created_read_listed_patched_and_deleted(http):
    assert (await http.get("/webhooks")).json() == {"results": []}
    made = await create(http, {"url": "https://example.com/hook", "headers": {"authorization": "TOKEN"}})
    uid = made["uuid"]
    assert str(uuid.UUID(uid)) == uid
    # Meilisearch's key order, and the Authorization value redacted.
    assert list(made) == ["uuid", "isEditable", "url", "headers"]
    assert made == {
        "uuid": uid,
        "isEditable": True,
        "url": "https://example.com/hook",
        "headers": {"authorization": "XXX..."},
    }
    assert (await http.get(f"/webhooks/{uid}")).json() == made
    # Any uuid spelling reads the same webhook.
    assert (await http.get(f"/webhooks/{uid.upper().replace('-', '')}")).json() == made

    patched = await http.patch(f"/webhooks/{uid}", json={"headers": {"authorization2": "TOKEN"}})
    assert patched.status_code == 200
    assert patched.json()["headers"] == {"authorization": "XXX...", "authorization2": "TOKEN"}
    patched = await http.patch(f"/webhooks/{uid}", json={"headers": {"authorization": None}})
    assert patched.json()["headers"] == {"authorization2": "TOKEN"}
    patched = await http.patch(f"/webhooks/{uid}", json={"url": "https://example.com/other"})
    assert patched.json() == {**made, "url": "https://example.com/other", "headers": {"authorization2": "TOKEN"}}
    patched = await http.patch(f"/webhooks/{uid}", json={"headers": None})
    assert patched.json()["headers"] == {}
    other = await create(http, {"url": "https://example.com/second"})
    listed = (await http.get("/webhooks")).json()["results"]
    assert listed == sorted([patched.json(), other], key=lambda w: w["uuid"])

    assert (await http.delete(f"/webhooks/{uid}")).status_code == 204
    missing = await http.get(f"/webhooks/{uid}")
    assert missing.status_code == 404
    assert missing.json() == error("webhook_not_found", f"Webhook `{uid}` not found.")
    assert (await http.delete(f"/webhooks/{uid}")).json() == missing.json()
    assert (await http.patch(f"/webhooks/{uid}", json={})).json() == missing.json()


async def test_authorization_values_are_redacted_as_meilisearch_does(http):
    made = await create(
        http,
        {
            "url": "https://example.com/hook",
            "headers": {"Authorization": "Bearer a-secret-of-more-than-thirty-chars!", "X-Other": "kept"},
        },
    )
    assert made["headers"] == {"Authorization": "Bearer a-secXXXXXX...", "X-Other": "kept"}
    made = await create(http, {"url": "https://example.com/hook", "headers": {"AUTHORIZATION": "Bearer short"}})
    assert made["headers"] == {"AUTHORIZATION": "Bearer XXX..."}


async def test_the_reserved_webhook_is_shown_first_and_cannot_be_changed(reserved_http):
    http = reserved_http
    other = await create(http, {"url": "https://example.com/hook"})
    listed = (await http.get("/webhooks")).json()["results"]
    assert listed[0] == {
        "uuid": NIL,
        "isEditable": False,
        "url": "https://example-cli.com/",
        "headers": {"Authorization": "Bearer a-XXXX..."},
    }
    assert listed[1:] == [other]
    assert (await http.get(f"/webhooks/{NIL}")).json() == listed[0]
    immutable = error(
        "immutable_webhook",
        f"Webhook `{NIL}` is immutable. The webhook defined from the command line cannot be modified using the API.",
    )
    for response in (
        await http.patch(f"/webhooks/{NIL}", json={"url": "https://x/"}),
        await http.delete(f"/webhooks/{NIL}"),
    ):
        assert (response.status_code, response.json()) == (400, immutable)


async def test_bodies_are_read_as_meilisearch_reads_them(http):
    async def refused(response, code: str, message: str, status: int = 400) -> None:
        assert (response.status_code, response.json()) == (status, error(code, message))

    missing = await http.post("/webhooks", json={"headers": {}})
    assert missing.status_code == 400 and missing.json()["code"] == "invalid_webhook_url"
    assert missing.json()["message"].startswith("The URL for the webhook `") and missing.json()["message"].endswith(
        "` is missing."
    )
    await refused(
        await http.post("/webhooks", json={"url": "not-a-valid-url"}),
        "invalid_webhook_url",
        "Invalid URL `not-a-valid-url`: relative URL without a base",
    )
    await refused(
        await http.post("/webhooks", json={"url": "https://example.com", "headers": {"invalid header name": "v"}}),
        "invalid_webhook_headers",
        "Invalid header name `invalid header name`: invalid HTTP header name",
    )
    await refused(
        await http.post("/webhooks", json={"url": "https://example.com", "headers": {"authorization": "a\nb"}}),
        "invalid_webhook_headers",
        "Invalid header value `authorization`: failed to parse header value",
    )
    await refused(
        await http.post("/webhooks", json={"url": "https://example.com", "uuid": NIL}),
        "immutable_webhook_uuid",
        f"Immutable field `uuid`: expected one of {FIELDS}",
    )
    await refused(
        await http.post("/webhooks", json={"url": "https://example.com", "isEditable": False}),
        "immutable_webhook_is_editable",
        f"Immutable field `isEditable`: expected one of {FIELDS}",
    )
    await refused(
        await http.post("/webhooks", json={"url": "https://example.com", "hedaers": {}}),
        "bad_request",
        f"Unknown field `hedaers`: did you mean `headers`? expected one of {FIELDS}",
    )
    await refused(
        await http.post("/webhooks", json={"url": 5}),
        "invalid_webhook_url",
        "Invalid value type at `.url`: expected a string, but found a positive integer: `5`",
    )
    await refused(
        await http.post("/webhooks", json={"url": "https://example.com", "headers": ["a"]}),
        "invalid_webhook_headers",
        'Invalid value type at `.headers`: expected an object, but found an array: `["a"]`',
    )
    for method in ("get", "delete"):
        await refused(
            await getattr(http, method)("/webhooks/invalid-uuid"),
            "invalid_webhook_uuid",
            "Invalid UUID: invalid character: found `i` at 0",
        )
    await refused(
        await http.patch("/webhooks/invalid-uuid", json={}),
        "invalid_webhook_uuid",
        "Invalid UUID: invalid character: found `i` at 0",
    )
    made = await create(http, {"url": "https://example.com"})
    response = await http.patch(f"/webhooks/{made['uuid']}", json={"url": None})
    await refused(response, "invalid_webhook_url", f"The URL for the webhook `{made['uuid']}` is missing.")
    await refused(
        await http.patch(f"/webhooks/{made['uuid']}", json={"uuid": NIL}),
        "immutable_webhook_uuid",
        f"Immutable field `uuid`: expected one of {FIELDS}",
    )


async def test_at_most_twenty_webhooks_of_at_most_two_hundred_headers(http):
    too_many = {f"x-h{i}": "v" for i in range(201)}
    response = await http.post("/webhooks", json={"url": "https://example.com", "headers": too_many})
    assert response.status_code == 400 and response.json()["code"] == "invalid_webhook_headers"
    assert (
        "Please limit the number of headers to 200. Hint: To remove an already defined header set its value to `null`"
        in response.json()["message"]
    )
    made = [await create(http, {"url": f"https://example.com/{i}"}) for i in range(20)]
    response = await http.post("/webhooks", json={"url": "https://example.com/21"})
    assert (response.status_code, response.json()) == (
        400,
        error(
            "invalid_webhooks",
            "Defining too many webhooks would crush the server. Please limit the number of webhooks to 20. You may use"
            " a third-party proxy server to dispatch events to more than 20 endpoints.",
        ),
    )
    # As Meilisearch, the count is checked before the url's presence.
    assert (await http.post("/webhooks", json={})).json()["code"] == "invalid_webhooks"
    # 200 headers fit; one more by PATCH does not.
    uid = made[0]["uuid"]
    fits = {f"x-h{i}": "v" for i in range(200)}
    assert (await http.patch(f"/webhooks/{uid}", json={"headers": fits})).status_code == 200
    response = await http.patch(f"/webhooks/{uid}", json={"headers": {"x-one-more": "v"}})
    assert response.json() == error(
        "invalid_webhook_headers",
        f"Too many headers for the webhook `{uid}`. Please limit the number of headers to 200. Hint: To remove an"
        " already defined header set its value to `null`",
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:7700/hook",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest",
        "http://[::1]:80/",
        "http://192.168.1.1/",
    ],
)
async def test_targets_outside_the_allowed_networks_are_refused(http, url):
    response = await http.post("/webhooks", json={"url": url})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_webhook_url"
    assert "--experimental-allowed-ip-networks" in response.json()["message"]


async def test_the_webhook_actions_guard_each_route(secured_http):
    http = secured_http
    made = await http.post("/webhooks", json={"url": "https://example.com"}, headers=MASTER)
    uid = made.json()["uuid"]
    key = await http.post(
        "/keys", json={"actions": ["webhooks.get"], "indexes": ["*"], "expiresAt": None}, headers=MASTER
    )
    reader = {"Authorization": f"Bearer {key.json()['key']}"}
    assert (await http.get("/webhooks", headers=reader)).status_code == 200
    assert (await http.get(f"/webhooks/{uid}", headers=reader)).status_code == 200
    for response in (
        await http.post("/webhooks", json={"url": "https://example.com"}, headers=reader),
        await http.patch(f"/webhooks/{uid}", json={}, headers=reader),
        await http.delete(f"/webhooks/{uid}", headers=reader),
    ):
        assert response.status_code == 403 and response.json()["code"] == "invalid_api_key"
    assert (await http.get("/webhooks")).status_code == 401


async def test_a_dump_carries_the_webhooks_into_another_database(http, service, config, clock, tmp_path, request):
    from helpers import restored_config

    made = await create(
        http, {"url": "https://example.com/hook", "headers": {"Authorization": "Bearer a-token"}, "secret": "s"}
    )
    assert (await http.post("/dumps")).status_code == 202
    await service.scheduler.tick()
    [path] = (tmp_path / "dumps").iterdir()
    running = await app.start(
        restored_config(config, "import_dump", path, tmp_path, request), background=False, clock=clock
    )
    try:
        async with gateway_client(running.grpc_target) as other:
            assert (await other.get("/webhooks")).json() == {"results": [made]}
            stored = await running.scheduler.units.read(lambda reader: reader.webhooks.get_webhook(made["uuid"]))
            assert (stored.headers, stored.secret) == ({"Authorization": "Bearer a-token"}, "s")
    finally:
        await running.stop(0)
