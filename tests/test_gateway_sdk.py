"""The official Meilisearch SDKs, unchanged, against a running gateway.

A real uvicorn on 127.0.0.1 serves the gateway beside a real gRPC server in this
test's event loop (`app.start` without `no_http`), with the background scheduler
on. The Python SDK is synchronous, so its calls run in a thread; the JS SDK runs
as `node tests/node/sdk.mjs URL` and asserts on its side too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import re
import shutil
from datetime import datetime

import httpx
import meilisearch
import pydantic
import pytest
from meilisearch.errors import MeilisearchApiError

from conftest import MASTER_KEY
from gateway_bodies import LINK
from helpers import finish, npm_install, start
from taskhub.server import app
from test_version import expected_version

pytestmark = pytest.mark.slow  # runs the JS SDK under node

NODE_DIR = pathlib.Path(__file__).parent / "node"


@pytest.fixture
async def live(config):
    service = await app.start(dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0"))
    yield service, f"http://127.0.0.1:{service.gateway.port}"
    await service.stop(0)


async def _enqueue(url: str, body: dict) -> int:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{url}/tasks", json=body)
    assert response.status_code == 202, response.text
    return response.json()["taskUid"]


def _api_error(call, *args) -> tuple[int, str, str, str]:
    try:
        call(*args)
    except MeilisearchApiError as error:
        return error.status_code, error.code, error.type, error.link
    raise AssertionError("the call succeeded")


async def test_python_sdk(live):
    service, url = live
    client = meilisearch.Client(url)
    sdk = asyncio.to_thread

    assert await sdk(client.health) == {"status": "available"}
    movies = await _enqueue(
        url, {"type": "documentAdditionOrUpdate", "indexUid": "movies", "details": {"receivedDocuments": 3}}
    )
    books = await _enqueue(url, {"type": "indexCreation", "indexUid": "books", "details": {"primaryKey": "isbn"}})
    dump = await _enqueue(url, {"type": "dumpCreation"})

    done = await sdk(client.wait_for_task, dump, 10_000, 20)
    assert (done.status, done.type, done.index_uid) == ("succeeded", "dumpCreation", None)
    assert done.started_at <= done.finished_at  # the SDK parsed both dates (six-digit fractions)
    assert done.duration.startswith("PT") and done.details["dumpUid"]

    task = await sdk(client.get_task, movies)
    assert (task.uid, task.index_uid, task.status, task.type, task.canceled_by) == (
        0,
        "movies",
        "enqueued",
        "documentAdditionOrUpdate",
        None,
    )
    assert task.details == {"receivedDocuments": 3, "indexedDocuments": None}
    assert (task.error, task.duration, task.started_at, task.finished_at) == (None, None, None, None)

    async def uids(parameters: dict) -> list[int]:
        return [t.uid for t in (await sdk(client.get_tasks, parameters)).results]

    everything = await sdk(client.get_tasks)
    assert (
        [t.uid for t in everything.results],
        everything.total,
        everything.limit,
        everything.from_,
        everything.next_,
    ) == ([2, 1, 0], 3, 20, 2, None)
    assert await uids({"statuses": ["enqueued"]}) == [1, 0]
    assert await uids({"types": ["indexCreation", "dumpCreation"]}) == [2, 1]
    assert await uids({"indexUids": ["books"]}) == [1]
    assert await uids({"uids": ["0", "2"]}) == [2, 0]
    assert await uids({"reverse": "true"}) == [0, 1, 2]
    page = await sdk(client.get_tasks, {"limit": 1, "from": 1})
    assert ([t.uid for t in page.results], page.total, page.limit, page.from_, page.next_) == ([1], 3, 1, 1, 0)
    enqueued_at = [t.enqueued_at.isoformat() + "Z" for t in everything.results]  # naive UTC from the SDK
    assert await uids({"afterEnqueuedAt": enqueued_at[2]}) == [2, 1]
    assert await uids({"beforeEnqueuedAt": enqueued_at[1]}) == [0]
    assert await uids({"afterFinishedAt": "2000-01-01", "beforeStartedAt": "2100-01-01"}) == [2]

    # wait_for_task polls while a worker (here the test) moves the task along.
    waiting = asyncio.create_task(sdk(client.wait_for_task, books, 10_000, 20))
    await asyncio.sleep(0.1)
    await start(service, books)
    await asyncio.sleep(0.1)
    await finish(service, books)
    done = await waiting
    assert (done.uid, done.status, done.details) == (books, "succeeded", {"primaryKey": "isbn"})
    assert done.started_at <= done.finished_at

    info = await sdk(client.cancel_tasks, {"uids": ["0"], "statuses": ["enqueued", "processing"]})
    assert (info.index_uid, info.status, info.type) == (None, "enqueued", "taskCancelation")
    canceled = await sdk(client.wait_for_task, info.task_uid, 10_000, 20)
    assert canceled.details == {
        "matchedTasks": 1,
        "canceledTasks": 1,
        "originalFilter": "?uids=0&statuses=enqueued%2Cprocessing",
    }
    assert await uids({"canceledBy": [str(info.task_uid)]}) == [movies]

    info = await sdk(client.delete_tasks, {"statuses": ["canceled"]})
    deleted = await sdk(client.wait_for_task, info.task_uid, 10_000, 20)
    assert (deleted.type, deleted.details["deletedTasks"]) == ("taskDeletion", 1)
    assert await sdk(_api_error, client.get_task, movies) == (
        404,
        "task_not_found",
        "invalid_request",
        LINK + "task_not_found",
    )
    assert await sdk(_api_error, client.get_tasks, {"statuses": ["doggo"]}) == (
        400,
        "invalid_task_statuses",
        "invalid_request",
        LINK + "invalid_task_statuses",
    )
    assert await sdk(_api_error, client.delete_tasks, {}) == (
        400,
        "missing_task_filters",
        "invalid_request",
        LINK + "missing_task_filters",
    )


async def test_python_sdk_batches(live):
    service, url = live
    client = meilisearch.Client(url)
    sdk = asyncio.to_thread
    movies = await _enqueue(
        url, {"type": "documentAdditionOrUpdate", "indexUid": "movies", "details": {"receivedDocuments": 3}}
    )
    await start(service, movies)
    await finish(service, movies, details={"indexedDocuments": 3})
    books = await _enqueue(url, {"type": "indexCreation", "indexUid": "books"})
    await start(service, books)
    await finish(service, books)

    page = await sdk(client.get_batches)
    assert ([b.uid for b in page.results], page.total, page.limit, page.from_, page.next_) == ([1, 0], 2, 20, 1, None)
    first = page.results[1]
    assert (first.details, first.progress) == ({"receivedDocuments": 3, "indexedDocuments": 3}, None)
    assert first.stats == {
        "totalNbTasks": 1,
        "status": {"succeeded": 1},
        "types": {"documentAdditionOrUpdate": 1},
        "indexUids": {"movies": 1},
    }
    assert first.started_at <= first.finished_at and first.duration.startswith("PT")
    # The SDK joins list elements with `,`, so they must be strings, as against Meilisearch.
    assert [b.uid for b in (await sdk(client.get_batches, {"uids": str(books)})).results] == [1]
    assert [b.uid for b in (await sdk(client.get_batches, {"statuses": ["succeeded"], "reverse": "true"})).results] == [
        0,
        1,
    ]
    batch = await sdk(client.get_batch, 1)
    assert (batch.uid, batch.details, batch.stats["types"]) == (1, {}, {"indexCreation": 1})
    assert await sdk(_api_error, client.get_batch, 99999) == (
        404,
        "batch_not_found",
        "invalid_request",
        LINK + "batch_not_found",
    )
    assert [t.uid for t in (await sdk(client.get_tasks, {"batchUids": "0"})).results] == [movies]
    assert (await sdk(client.get_task, movies)).status == "succeeded"  # batchUid does not trouble its model
    # A known SDK limitation, the same against Meilisearch: its `BatchResults.from_` is an `int`, so the empty
    # list's `"from": null` (Meilisearch's own answer) fails its validation.
    async with httpx.AsyncClient() as http:
        empty = (await http.get(f"{url}/batches?batchUids=99999")).json()
    assert empty == {"results": [], "total": 0, "limit": 20, "from": None, "next": None}
    with pytest.raises(pydantic.ValidationError):
        await sdk(client.get_batches, {"batchUids": "99999"})


async def test_python_sdk_dumps_snapshots_and_version(live):
    _, url = live
    client = meilisearch.Client(url)
    sdk = asyncio.to_thread
    version = await sdk(client.get_version)
    assert list(version) == ["commitSha", "commitDate", "pkgVersion"]
    assert version == expected_version() == await sdk(client.version)
    dump = await sdk(client.create_dump)
    snapshot = await sdk(client.create_snapshot)
    assert [(t.task_uid, t.index_uid, t.status, t.type) for t in (dump, snapshot)] == [
        (0, None, "enqueued", "dumpCreation"),
        (1, None, "enqueued", "snapshotCreation"),
    ]
    assert dump.enqueued_at <= snapshot.enqueued_at  # the SDK parsed both dates
    done = await sdk(client.wait_for_task, dump.task_uid, 10_000, 20)
    assert done.status == "succeeded" and re.fullmatch(r"[0-9]{8}-[0-9]{9}", done.details["dumpUid"])
    done = await sdk(client.wait_for_task, snapshot.task_uid, 10_000, 20)
    assert (done.status, done.details) == ("succeeded", None)


async def test_python_sdk_with_a_master_key(config):
    """Keys made, read, renamed and deleted with the SDK; a scoped key's task calls see its index only."""
    service = await app.start(
        dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0", master_key=MASTER_KEY)
    )
    url = f"http://127.0.0.1:{service.gateway.port}"
    sdk = asyncio.to_thread
    try:
        master = meilisearch.Client(url, MASTER_KEY)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {MASTER_KEY}"}) as http:
            for index in ("movies", "books"):
                response = await http.post(f"{url}/tasks", json={"type": "indexCreation", "indexUid": index})
                assert response.status_code == 202, response.text
        assert await sdk(master.health) == {"status": "available"}  # open to all, as in Meilisearch
        # Without a key the SDK still sends `Authorization: Bearer None`: a key, and not a valid one.
        assert await sdk(_api_error, meilisearch.Client(url).get_tasks) == (
            403,
            "invalid_api_key",
            "auth",
            LINK + "invalid_api_key",
        )
        assert await sdk(_api_error, meilisearch.Client(url, "not-a-key").get_task, 0) == (
            403,
            "invalid_api_key",
            "auth",
            LINK + "invalid_api_key",
        )

        key = await sdk(
            master.create_key,
            {
                "name": "movies reader",
                "description": "for the movies team",
                "actions": ["tasks.get", "tasks.cancel", "tasks.delete"],
                "indexes": ["movies"],
                "expiresAt": "2042-04-02T00:42:42Z",
            },
        )
        assert (key.name, key.description, key.actions, key.indexes, key.expires_at) == (
            "movies reader",
            "for the movies team",
            ["tasks.get", "tasks.cancel", "tasks.delete"],
            ["movies"],
            datetime(2042, 4, 2, 0, 42, 42),
        )
        assert key.created_at == key.updated_at  # the SDK parsed both dates
        other = await sdk(master.create_key, {"actions": ["*"], "indexes": ["*"], "expiresAt": None})
        assert (other.name, other.description, other.expires_at) == (None, None, None)
        listed = await sdk(master.get_keys, {"limit": 1, "offset": 1})
        assert ([k.uid for k in listed.results], listed.offset, listed.limit, listed.total) == ([key.uid], 1, 1, 2)
        assert (await sdk(master.get_key, key.key)).uid == (await sdk(master.get_key, key.uid)).uid == key.uid
        renamed = await sdk(master.update_key, key.uid, {"name": "renamed"})
        assert (renamed.name, renamed.description, renamed.key) == ("renamed", "for the movies team", key.key)
        assert await sdk(_api_error, master.update_key, key.uid, {"indexes": ["*"]}) == (
            400,
            "immutable_api_key_indexes",
            "invalid_request",
            LINK + "immutable_api_key_indexes",
        )
        assert await sdk(_api_error, meilisearch.Client(url, other.key).get_keys) == (
            403,
            "invalid_api_key",
            "auth",
            LINK + "invalid_api_key",
        )

        scoped = meilisearch.Client(url, key.key)
        page = await sdk(scoped.get_tasks)
        assert ([t.index_uid for t in page.results], page.total) == (["movies"], 1)
        assert (await sdk(scoped.get_task, 0)).index_uid == "movies"
        assert await sdk(_api_error, scoped.get_task, 1) == (
            404,
            "task_not_found",
            "invalid_request",
            LINK + "task_not_found",
        )
        info = await sdk(scoped.cancel_tasks, {"statuses": ["enqueued"]})
        canceled = await sdk(master.wait_for_task, info.task_uid, 10_000, 20)
        assert (canceled.status, canceled.details["matchedTasks"]) == ("succeeded", 1)
        tasks = (await sdk(master.get_tasks, {"uids": ["0", "1"]})).results
        assert [(t.index_uid, t.status) for t in tasks] == [("books", "enqueued"), ("movies", "canceled")]
        info = await sdk(scoped.delete_tasks, {"statuses": ["canceled"]})
        deleted = await sdk(master.wait_for_task, info.task_uid, 10_000, 20)
        assert deleted.details["deletedTasks"] == 1
        assert await sdk(_api_error, scoped.get_task, 0) == (
            404,
            "task_not_found",
            "invalid_request",
            LINK + "task_not_found",
        )

        assert await sdk(meilisearch.Client(url, other.key).get_version) == expected_version()  # `*`
        assert await sdk(_api_error, scoped.get_version) == (403, "invalid_api_key", "auth", LINK + "invalid_api_key")
        # A dump or a snapshot needs its own action, on every index: `tasks.*` is not enough.
        dumper = await sdk(master.create_key, {"actions": ["dumps.create"], "indexes": ["*"], "expiresAt": None})
        tasker = await sdk(master.create_key, {"actions": ["tasks.*"], "indexes": ["*"], "expiresAt": None})
        info = await sdk(meilisearch.Client(url, dumper.key).create_dump)
        assert (info.type, (await sdk(master.wait_for_task, info.task_uid, 10_000, 20)).status) == (
            "dumpCreation",
            "succeeded",
        )
        for client, call in (
            (meilisearch.Client(url, dumper.key), "create_snapshot"),
            (meilisearch.Client(url, tasker.key), "create_dump"),
            (meilisearch.Client(url, tasker.key), "create_snapshot"),
            (scoped, "create_dump"),
        ):
            assert await sdk(_api_error, getattr(client, call)) == (
                403,
                "invalid_api_key",
                "auth",
                LINK + "invalid_api_key",
            ), call

        assert await sdk(master.delete_key, key.uid) == 204
        assert await sdk(_api_error, scoped.get_tasks) == (403, "invalid_api_key", "auth", LINK + "invalid_api_key")
        assert await sdk(_api_error, master.get_key, key.uid) == (
            404,
            "api_key_not_found",
            "invalid_request",
            LINK + "api_key_not_found",
        )
    finally:
        await service.stop(0)


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="needs node and npm")
@pytest.mark.timeout(120)
async def test_js_sdk(live):
    _, url = live
    await npm_install(NODE_DIR, "meilisearch")
    # A subprocess, so this event loop keeps serving the gateway the script calls.
    process = await asyncio.create_subprocess_exec(
        "node",
        "sdk.mjs",
        url,
        json.dumps(expected_version()),
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["ok"] is True and summary["checks"] >= 20
