"""The Python client and the CLI against a server with a master key: keys that work, and the errors when not."""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import MASTER_KEY
from gateway_bodies import error
from taskhub.client import AsyncTaskHubClient, TaskHubClient, TaskHubError
from test_cli import CLI

MISSING = ("missing_authorization_header",
           "The Authorization header is missing. It must use the bearer authorization method.")
INVALID = ("invalid_api_key", "The provided API key is invalid.")


@pytest.fixture
async def movies_key(secured_service) -> str:
    """A `tasks.*` key for `movies`, and one task in `movies` (0) and one in `books` (1)."""
    record = await secured_service.keys.create(name=None, description=None, actions=["tasks.*"], indexes=["movies"],
                                               expires_at=None, uid=None)
    async with AsyncTaskHubClient(secured_service.grpc_target, api_key=MASTER_KEY) as master:
        await master.enqueue("indexCreation", "movies")
        await master.enqueue("indexCreation", "books")
    return secured_service.keys.secret(record.uid)


async def test_async_client_raises_the_auth_codes(secured_service, movies_key):
    target = secured_service.grpc_target
    for api_key, expected in ((None, MISSING), ("", MISSING), ("not-a-key", INVALID)):
        async with AsyncTaskHubClient(target, api_key=api_key) as client:
            for call in (client.list_tasks(), client.get_task(0), client.enqueue("indexCreation", "movies"),
                         client.cancel_tasks(uids=[0]), client.delete_tasks(uids=[0])):
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


async def test_cli_sends_the_key_from_the_flag_or_the_environment(secured_service, movies_key):
    cli = CLI(secured_service.grpc_target)
    code, out, err = await cli("list", "--json")
    assert (code, out, json.loads(err)) == (4, "", error(*MISSING, "auth"))
    code, out, err = await cli("get", "0", "--api-key", "not-a-key")
    assert (code, out, err) == (4, "", "taskhub: The provided API key is invalid. (invalid_api_key)\n")

    assert (await cli.json("list", "--api-key", movies_key))["total"] == 1
    cli.env["TASKHUB_API_KEY"] = movies_key
    page = await cli.json("list")
    assert [t["indexUid"] for t in page["results"]] == ["movies"]
    code, _, err = await cli("get", "1", "--json")  # another index's task does not exist for this key
    assert (code, json.loads(err)["code"]) == (3, "task_not_found")
    code, _, err = await cli("enqueue", "indexCreation", "--index-uid", "books")
    assert (code, err) == (4, "taskhub: The provided API key is invalid. (invalid_api_key)\n")
    # The flag wins over the environment.
    assert (await cli.json("list", "--api-key", MASTER_KEY))["total"] == 2
