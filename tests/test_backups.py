"""Dumps and snapshots: `POST /dumps` and `POST /snapshots`, and the key actions that guard them.

With a master key, a `dumpCreation` needs `dumps.create` (or `dumps.*`, `*`) and a
`snapshotCreation` needs `snapshots.create` (or `snapshots.*`, `*`) however it is asked
for: the Meilisearch routes, `POST /tasks`, gRPC `EnqueueTask` and `EnqueueTasks`. The
server decides, so the gateway and gRPC callers meet the same rule.
"""

from __future__ import annotations

import grpc
import pytest

from conftest import MASTER_KEY
from gateway_bodies import SUMMARY_KEYS, at, error
from helpers import T, error_of
from taskhub.v1 import key_service_pb2 as kpb, key_service_pb2_grpc, task_service_pb2 as pb, task_service_pb2_grpc

MASTER = (("authorization", f"Bearer {MASTER_KEY}"),)
INVALID = (grpc.StatusCode.PERMISSION_DENIED, "invalid_api_key", "The provided API key is invalid.")
INVALID_BODY = error("invalid_api_key", "The provided API key is invalid.", "auth")
DUMP = pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION)
SNAPSHOT = pb.EnqueueTaskRequest(type=T.TASK_TYPE_SNAPSHOT_CREATION)
MOVIES = pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="movies")


def bearer(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def secured_channel(secured_service):
    async with grpc.aio.insecure_channel(secured_service.grpc_target) as channel:
        yield channel


async def make_key(channel, actions: list[str], indexes: tuple[str, ...] = ("*",)) -> str:
    admin = key_service_pb2_grpc.KeyServiceStub(channel)
    request = kpb.CreateKeyRequest(actions=actions, indexes=list(indexes))
    return (await admin.CreateKey(request, metadata=MASTER)).key.key


async def stored(tasks) -> int:
    return (await tasks.ListTasks(pb.ListTasksRequest(), metadata=MASTER)).total


# Per key's actions: may it enqueue (a dump, a snapshot, an index task)?
RIGHTS = [
    (["tasks.enqueue"], (False, False, True)),
    (["tasks.*"], (False, False, True)),
    (["dumps.create"], (True, False, False)),
    (["dumps.*"], (True, False, False)),
    (["snapshots.create"], (False, True, False)),
    (["snapshots.*"], (False, True, False)),
    (["tasks.enqueue", "dumps.create"], (True, False, True)),
    (["*"], (True, True, True)),
]


@pytest.mark.parametrize(("actions", "rights"), RIGHTS)
async def test_each_type_needs_its_own_action_over_grpc(secured_channel, actions, rights):
    tasks = task_service_pb2_grpc.TaskServiceStub(secured_channel)
    key = bearer(await make_key(secured_channel, actions))
    for request, allowed in zip((DUMP, SNAPSHOT, MOVIES), rights):
        before = await stored(tasks)
        if allowed:
            summary = (await tasks.EnqueueTask(request, metadata=key)).task
            assert (summary.type, await stored(tasks)) == (request.type, before + 1)
        else:
            assert await error_of(tasks.EnqueueTask(request, metadata=key)) == INVALID
            assert await stored(tasks) == before  # nothing stored


async def test_a_batch_needs_the_action_of_every_task_in_it(secured_channel):
    tasks = task_service_pb2_grpc.TaskServiceStub(secured_channel)
    enqueuer = bearer(await make_key(secured_channel, ["tasks.enqueue"]))
    code, reason, message = await error_of(
        tasks.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[MOVIES, SNAPSHOT]), metadata=enqueuer)
    )
    assert (code, reason, message) == (INVALID[0], INVALID[1], "`tasks[1]`: The provided API key is invalid.")
    assert await stored(tasks) == 0
    both = bearer(await make_key(secured_channel, ["tasks.enqueue", "snapshots.create"]))
    done = await tasks.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[MOVIES, SNAPSHOT]), metadata=both)
    assert [t.type for t in done.tasks] == [T.TASK_TYPE_INDEX_CREATION, T.TASK_TYPE_SNAPSHOT_CREATION]


async def test_a_key_scoped_to_indexes_never_makes_a_dump(secured_channel):
    """A dump and a snapshot hold every index's tasks: a key scoped to some indexes may not start one."""
    tasks = task_service_pb2_grpc.TaskServiceStub(secured_channel)
    scoped = bearer(await make_key(secured_channel, ["dumps.create", "snapshots.create"], ("movies",)))
    for request in (DUMP, SNAPSHOT):
        assert await error_of(tasks.EnqueueTask(request, metadata=scoped)) == INVALID
    assert await stored(tasks) == 0


async def test_a_key_without_any_enqueue_action_is_refused_before_its_request_is_read(secured_channel):
    tasks = task_service_pb2_grpc.TaskServiceStub(secured_channel)
    reader = bearer(await make_key(secured_channel, ["tasks.get"]))
    # An unknown type would be `invalid_task_types`; a key that may enqueue nothing learns nothing of it.
    assert await error_of(tasks.EnqueueTask(pb.EnqueueTaskRequest(type=999), metadata=reader)) == INVALID


async def test_post_tasks_meets_the_same_rule(secured_http, secured_channel):
    enqueuer = await make_key(secured_channel, ["tasks.enqueue"])
    dumper = await make_key(secured_channel, ["dumps.create"])
    body = {"type": "dumpCreation"}
    response = await secured_http.post("/tasks", json=body, headers={"Authorization": f"Bearer {enqueuer}"})
    assert (response.status_code, response.json()) == (403, INVALID_BODY)
    response = await secured_http.post("/tasks", json=body, headers={"Authorization": f"Bearer {dumper}"})
    assert (response.status_code, response.json()["type"]) == (202, "dumpCreation")


NEW_ACTIONS = ["dumps.create", "dumps.*", "snapshots.create", "snapshots.*", "version"]


async def test_keys_take_meilisearchs_names_for_the_new_actions(secured_http):
    response = await secured_http.post(
        "/keys",
        json={"actions": NEW_ACTIONS, "indexes": ["*"], "expiresAt": None},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert (response.status_code, response.json()["actions"]) == (201, NEW_ACTIONS)


# -- the routes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "type_", "details"),
    [("/dumps", "dumpCreation", {"dumpUid": str}), ("/snapshots", "snapshotCreation", None)],
)
async def test_the_route_enqueues_the_task_and_the_server_runs_it(http, service, path, type_, details):
    response = await http.post(path)
    assert response.status_code == 202
    assert response.json() == {"taskUid": 0, "indexUid": None, "status": "enqueued", "type": type_, "enqueuedAt": at(1)}
    assert list(response.json()) == SUMMARY_KEYS
    await service.scheduler.tick()
    task = (await http.get("/tasks/0")).json()
    assert (task["status"], task["type"], task["indexUid"]) == ("succeeded", type_, None)
    if details is None:
        assert task["details"] is None  # seed 004: a snapshot's details are null
    else:
        assert list(task["details"]) == ["dumpUid"] and isinstance(task["details"]["dumpUid"], str)


@pytest.mark.parametrize("path", ["/dumps", "/snapshots"])
async def test_the_route_ignores_what_a_client_sends_beside_it(http, path):
    """Meilisearch reads no body and no parameter here: the SDKs' `null`, `{}` or nothing all work."""
    for extra in (
        {},
        {"content": b"null", "headers": {"content-type": "application/json"}},
        {"json": {}},
        {"content": b"anything", "headers": {"content-type": "text/plain"}},
        {"params": {"doggo": "bork"}},
    ):
        response = await http.post(path, **extra)
        assert (response.status_code, list(response.json())) == (202, SUMMARY_KEYS), extra


@pytest.mark.parametrize("path", ["/dumps", "/snapshots"])
async def test_other_methods_get_the_error_body(http, path):
    response = await http.get(path)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json() == error("bad_request", f"`GET {path}`: method not allowed; see `GET /openapi.json`.")
