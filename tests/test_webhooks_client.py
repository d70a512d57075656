"""Webhooks through the clients (sync and asyncio) and `taskhub webhooks ...` as a real subprocess."""

from __future__ import annotations

import asyncio
import json

import pytest

from taskhub.client import AsyncTaskHubClient, TaskHubClient, TaskHubError, Webhook
from test_cli import CLI, command

NIL = "00000000-0000-0000-0000-000000000000"


async def test_the_sync_client_creates_reads_changes_and_deletes_webhooks(service):
    await asyncio.to_thread(_sync_calls, service.grpc_target)


def _sync_calls(target: str) -> None:
    with TaskHubClient(target) as client:
        made = client.create_webhook(
            "https://example.com/hook", headers={"Authorization": "Bearer a-token", "X-A": "1"}, secret="s"
        )
        assert isinstance(made, Webhook) and made.is_editable and made.has_secret
        assert made.to_dict() == {
            "uuid": made.uuid,
            "isEditable": True,
            "url": "https://example.com/hook",
            "headers": {"Authorization": "Bearer XXX...", "X-A": "1"},
            "secret": "XXX...",
        }
        assert client.list_webhooks() == [made] and client.get_webhook(made.uuid) == made
        changed = client.update_webhook(made.uuid, url="https://example.com/2", headers={"X-A": None}, secret=None)
        assert (changed.url, changed.headers, changed.has_secret) == (
            "https://example.com/2",
            {"Authorization": "Bearer XXX..."},
            False,
        )
        assert client.update_webhook(made.uuid, clear_headers=True).headers == {}
        client.delete_webhook(made.uuid)
        with pytest.raises(TaskHubError) as raised:
            client.get_webhook(made.uuid)
        assert raised.value.code == "webhook_not_found"


async def test_the_asyncio_client_does_the_same(service):
    async with AsyncTaskHubClient(service.grpc_target) as client:
        made = await client.create_webhook("https://example.com/hook")
        assert await client.list_webhooks() == [made]
        assert (await client.update_webhook(made.uuid, headers={"X-B": "2"})).headers == {"X-B": "2"}
        await client.delete_webhook(made.uuid)
        assert await client.list_webhooks() == []
        with pytest.raises(TaskHubError) as raised:
            await client.create_webhook("http://10.1.2.3/")
        assert raised.value.code == "invalid_webhook_url"


class WebhooksCLI(CLI):
    async def start(self, *args, stdout=None):
        argv = [*command()[:-1], "webhooks", *args]
        return await asyncio.create_subprocess_exec(
            *argv, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )


async def test_the_cli_manages_webhooks(service):
    cli = WebhooksCLI(service.grpc_target)
    made = await cli.json("create", "https://example.com/hook", "--header", "X-Team: search", "--secret", "s")
    assert made == {
        "uuid": made["uuid"],
        "isEditable": True,
        "url": "https://example.com/hook",
        "headers": {"X-Team": "search"},
        "secret": "XXX...",
    }
    assert await cli.json("list") == {"results": [made]}
    assert await cli.json("get", made["uuid"]) == made
    changed = await cli.json("update", made["uuid"], "--header", "X-Team:", "--no-secret")
    assert changed == {"uuid": made["uuid"], "isEditable": True, "url": "https://example.com/hook", "headers": {}}
    code, out, _ = await cli("list")
    assert code == 0 and made["uuid"] in out and out.rstrip().endswith("1 webhook")
    code, out, err = await cli("delete", made["uuid"])
    assert (code, out) == (0, f"deleted webhook {made['uuid']}\n")
    code, out, err = await cli("get", made["uuid"], "--json")
    assert code == 3 and json.loads(err or out)["code"] == "webhook_not_found"
    code, _, err = await cli("create", "http://127.0.0.1/hook")
    assert code == 2 and "invalid_webhook_url" in err
