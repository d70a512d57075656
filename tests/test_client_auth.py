"""The Python client and the CLI against a server with a master key: keys that work, and the errors when not."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, date, datetime

import pytest

from conftest import MASTER_KEY, gateway_client
from gateway_bodies import error
from taskhub.client import AsyncTaskHubClient, TaskHubClient, TaskHubError
from test_cli import CLI

MISSING = (
    "missing_authorization_header",
    "The Authorization header is missing. It must use the bearer authorization method.",
)
INVALID = ("invalid_api_key", "The provided API key is invalid.")


@pytest.fixture
async def movies_key(secured_service) -> str:
    """A `tasks.*` key for `movies`, and one task in `movies` (0) and one in `books` (1)."""
    record = await secured_service.keys.create(
        name=None, description=None, actions=["tasks.*"], indexes=["movies"], expires_at=None, uid=None
    )
    async with AsyncTaskHubClient(secured_service.grpc_target, api_key=MASTER_KEY) as master:
        await master.enqueue("indexCreation", "movies")
        await master.enqueue("indexCreation", "books")
    return secured_service.keys.secret(record.uid)


async def test_async_client_raises_the_auth_codes(secured_service, movies_key):
    target = secured_service.grpc_target
    for api_key, expected in ((None, MISSING), ("", MISSING), ("not-a-key", INVALID)):
        async with AsyncTaskHubClient(target, api_key=api_key) as client:
            for call in (
                client.list_tasks(),
                client.get_task(0),
                client.enqueue("indexCreation", "movies"),
                client.cancel_tasks(uids=[0]),
                client.delete_tasks(uids=[0]),
            ):
                with pytest.raises(TaskHubError) as caught:
                    await call
                assert (caught.value.code, caught.value.message) == expected, api_key
            with pytest.raises(TaskHubError) as caught:
                async for _ in client.watch_task(0):
                    pass
            assert caught.value.code == expected[0]

    async with AsyncTaskHubClient(target, api_key=movies_key) as client:
        assert [t.index_uid for t in (await client.list_tasks()).results] == ["movies"]
        with pytest.raises(TaskHubError) as caught:
            await client.get_task(1)
        assert caught.value.code == "task_not_found"
        with pytest.raises(TaskHubError) as caught:
            await client.enqueue("indexCreation", "books")
        assert (caught.value.code, caught.value.message) == INVALID
    async with AsyncTaskHubClient(target, api_key=MASTER_KEY) as client:
        assert (await client.list_tasks()).total == 2


async def test_sync_client_raises_the_auth_codes(secured_service, movies_key):
    def run() -> list[tuple[str, str] | int]:
        seen = []
        for api_key in (None, "not-a-key"):
            with TaskHubClient(secured_service.grpc_target, api_key=api_key) as client:
                try:
                    client.list_tasks()
                except TaskHubError as caught:
                    seen.append((caught.code, caught.message))
        with TaskHubClient(secured_service.grpc_target, api_key=movies_key) as client:
            seen.append(client.list_tasks().total)
        return seen

    assert await asyncio.to_thread(run) == [MISSING, INVALID, 1]


INVALID_IN_CLI_WORDS = (
    "The API key (--api-key or TASKHUB_API_KEY) is invalid, or not allowed this action on these indexes."
)


async def test_cli_sends_the_key_from_the_flag_or_the_environment(secured_service, movies_key):
    cli = CLI(secured_service.grpc_target)
    code, out, err = await cli("list", "--json")
    assert (code, out, json.loads(err)) == (4, "", error(*MISSING, "auth"))
    code, out, err = await cli("get", "0", "--api-key", "not-a-key")
    assert (code, out, err) == (4, "", f"taskhub: {INVALID_IN_CLI_WORDS} (invalid_api_key)\n")

    assert (await cli.json("list", "--api-key", movies_key))["total"] == 1
    cli.env["TASKHUB_API_KEY"] = movies_key
    page = await cli.json("list")
    assert [t["indexUid"] for t in page["results"]] == ["movies"]
    code, _, err = await cli("get", "1", "--json")  # another index's task does not exist for this key
    assert (code, json.loads(err)["code"]) == (3, "task_not_found")
    code, _, err = await cli("enqueue", "indexCreation", "--index-uid", "books")
    assert (code, err) == (4, f"taskhub: {INVALID_IN_CLI_WORDS} (invalid_api_key)\n")
    # The flag wins over the environment.
    assert (await cli.json("list", "--api-key", MASTER_KEY))["total"] == 2


# -- managing keys ------------------------------------------------------------------

UID = "01b4bc42-eb33-4041-b481-254d00cce834"


async def test_async_client_manages_keys_as_the_gateway_shows_them(secured_service):
    target = secured_service.grpc_target
    async with AsyncTaskHubClient(target, api_key=MASTER_KEY) as master:
        key = await master.create_key(
            ["tasks.get", "tasks.cancel"],
            "movies",
            name="ci",
            description="for CI",
            expires_at="2042-04-02T02:42:42+02:00",
            uid=UID,
        )
        assert (key.uid, key.key, key.name, key.description, key.actions, key.indexes, key.expires_at) == (
            UID,
            secured_service.keys.secret(UID),
            "ci",
            "for CI",
            ["tasks.get", "tasks.cancel"],
            ["movies"],
            datetime(2042, 4, 2, 0, 42, 42, tzinfo=UTC),
        )
        async with gateway_client(target) as http:
            shown = (await http.get(f"/keys/{UID}", headers={"Authorization": f"Bearer {MASTER_KEY}"})).json()
        assert key.to_dict() == shown and list(key.to_dict()) == list(shown)

        for expires_at, stored in (
            (date(2042, 4, 2), "2042-04-02T00:00:00.000000Z"),
            (datetime(2042, 4, 2, 0, 42), "2042-04-02T00:42:00.000000Z"),
            ("2042-04-02", "2042-04-02T00:00:00.000000Z"),
            (None, None),
        ):
            made = await master.create_key("*", ["*"], expires_at=expires_at)
            assert made.to_dict()["expiresAt"] == stored
        page = await master.list_keys(offset=4, limit=2)
        assert ([k.uid for k in page.results], page.offset, page.limit, page.total) == ([UID], 4, 2, 5)
        assert page.to_dict()["results"] == [shown]

        assert await master.get_key(key.key) == key
        renamed = await master.update_key(key.key, name="renamed")
        assert (renamed.name, renamed.description, renamed.updated_at > key.updated_at) == ("renamed", "for CI", True)
        cleared = await master.update_key(key.key, description="kept", clear=["name"])
        assert (cleared.name, cleared.description) == (None, "kept")
        with pytest.raises(TaskHubError) as caught:
            await master.update_key(key.key, name="x", clear=["name"])
        assert caught.value.code == "bad_request"
        await master.delete_key(UID)
        with pytest.raises(TaskHubError) as caught:
            await master.get_key(UID)
        assert (caught.value.code, caught.value.message) == ("api_key_not_found", f"API key `{UID}` not found.")
        with pytest.raises(TaskHubError) as caught:
            await master.create_key("*", "*", expires_at="next tuesday")
        assert caught.value.code == "invalid_api_key_expires_at"

    async with AsyncTaskHubClient(target, api_key=made.key) as client:  # an API key, even with `*`, is no master
        with pytest.raises(TaskHubError) as caught:
            await client.list_keys()
        assert (caught.value.code, caught.value.message) == INVALID


async def test_sync_client_manages_keys(secured_service):
    def run() -> list:
        with TaskHubClient(secured_service.grpc_target, api_key=MASTER_KEY) as master:
            key = master.create_key("tasks.get", "movies", uid=UID)
            seen = [
                master.list_keys().total,
                master.get_key(UID) == key,
                master.update_key(UID, description="d").description,
            ]
            master.delete_key(key.key)
            return [*seen, master.list_keys().total]

    assert await asyncio.to_thread(run) == [1, True, "d", 0]


async def test_cli_manages_keys(secured_service):
    cli = CLI(secured_service.grpc_target)
    cli.env["TASKHUB_API_KEY"] = MASTER_KEY

    async def keys(*args: str, env: dict[str, str] = cli.env) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "keys",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 20)
        return process.returncode, out.decode(), err.decode()

    code, out, err = await keys(
        "create",
        "--actions",
        "tasks.get,tasks.cancel",
        "--indexes",
        "movies, books*",
        "--name",
        "ci",
        "--expires-at",
        "2042-04-02",
        "--uid",
        UID,
        "--json",
    )
    created = json.loads(out)
    assert (code, err, created["uid"], created["actions"], created["indexes"], created["expiresAt"]) == (
        0,
        "",
        UID,
        ["tasks.get", "tasks.cancel"],
        ["movies", "books*"],
        "2042-04-02T00:00:00.000000Z",
    )
    assert list(created) == [
        "name",
        "description",
        "key",
        "uid",
        "actions",
        "indexes",
        "expiresAt",
        "createdAt",
        "updatedAt",
    ]

    code, out, _ = await keys("list", "--wide")
    assert code == 0 and out.splitlines()[1].split() == [
        UID,
        "ci",
        "tasks.get,tasks.cancel",
        "movies,books*",
        "2042-04-02T00:00:00.000000Z",
    ]
    assert out.splitlines()[-1] == "1 of 1 keys"
    code, out, _ = await keys("get", created["key"])
    assert code == 0 and f"key          {created['key']}" in out.splitlines()
    code, out, _ = await keys("update", UID, "--name", "renamed", "--json")
    assert (code, json.loads(out)["name"]) == (0, "renamed")
    code, out, _ = await keys("update", UID, "--clear", "name", "--clear", "description", "--json")
    assert (code, json.loads(out)["name"], json.loads(out)["description"]) == (0, None, None)
    assert (await keys("delete", UID)) == (0, f"deleted key {UID}\n", "")

    assert (await keys("get", UID)) == (3, "", f"taskhub: API key `{UID}` not found. (api_key_not_found)\n")
    code, _, err = await keys("create", "--actions", "tasks.fly", "--indexes", "*", "--json")
    assert (code, json.loads(err)["code"]) == (2, "invalid_api_key_actions")
    code, _, err = await keys("list", "--api-key", created["key"])  # a deleted key: refused
    assert (code, err) == (4, f"taskhub: {INVALID_IN_CLI_WORDS} (invalid_api_key)\n")
