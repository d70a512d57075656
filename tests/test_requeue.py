"""Requeue through the public interfaces: gRPC RequeueTasks, HTTP POST /tasks/requeue, the Python client, the CLI.

Failed or canceled tasks matching a filter become new tasks (new uids, same index, type and details,
`requeuedFrom`); nothing else is requeued, a scoped key requeues what it sees, bad input stores nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import grpc
import pytest

from helpers import T, details_for, error_of, finish, start
from taskhub.server import app
from taskhub.server.rules.requeue import MAX_REQUEUE
from taskhub.v1 import key_service_pb2 as kpb, key_service_pb2_grpc, task_pb2, task_service_pb2 as pb

MASTER = "a-master-key-of-sixteen-bytes-or-more"
BOOM = {
    "message": "boom",
    "code": "internal",
    "type": "internal",
    "link": "https://docs.meilisearch.com/errors#internal",
}
ADD = T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE


def addition(index: str, received: int) -> pb.EnqueueTaskRequest:
    return pb.EnqueueTaskRequest(type=ADD, index_uid=index, details=details_for(ADD, received_documents=received))


async def history(service, stub, metadata=()) -> None:
    """0 movies failed, 1 movies canceled (by 5), 2 movies succeeded, 3 movies enqueued, 4 books failed."""
    for index, received in (("movies", 1), ("movies", 2), ("movies", 3), ("movies", 4), ("books", 5)):
        await stub.EnqueueTask(addition(index, received), metadata=metadata)
    await start(service, 0)
    await finish(service, 0, error=BOOM)
    await stub.CancelTasks(
        pb.CancelTasksRequest(filter=task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=[1]))), metadata=metadata
    )
    await service.scheduler.tick()
    await start(service, 2)
    await finish(service, 2, details={"indexedDocuments": 3})
    await start(service, 4)
    await finish(service, 4, error=BOOM)


def every(*statuses: int) -> task_pb2.TaskFilter:
    return task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=list(statuses)))


async def test_failed_and_canceled_tasks_come_back_as_new_tasks(service, stub):
    await history(service, stub)
    # Every status named: only the failed and the canceled are requeued, oldest first.
    response = await stub.RequeueTasks(pb.RequeueTasksRequest(filter=every(1, 2, 3, 4, 5)))
    new = list(response.tasks)
    assert [(t.uid, t.requeued_from, t.index_uid, t.status) for t in new] == [
        (6, 0, "movies", T.TASK_STATUS_ENQUEUED),
        (7, 1, "movies", T.TASK_STATUS_ENQUEUED),
        (8, 4, "books", T.TASK_STATUS_ENQUEUED),
    ]
    # The same details, their outputs null again (the failed task's `indexedDocuments` was 0).
    for task, received in zip(new, (1, 2, 5), strict=True):
        assert task.type == ADD and task.details == details_for(ADD, received_documents=received)
        assert not task.HasField("error") and not task.HasField("started_at")
    again = (await stub.GetTask(pb.GetTaskRequest(uid=6))).task
    assert again == new[0]
    # The originals stay as they were.
    original = (await stub.GetTask(pb.GetTaskRequest(uid=0))).task
    assert original.status == T.TASK_STATUS_FAILED and not original.HasField("requeued_from")


async def test_a_filter_naming_no_failed_or_canceled_status_requeues_nothing(service, stub):
    await history(service, stub)
    assert list((await stub.RequeueTasks(pb.RequeueTasksRequest(filter=every(3, 1)))).tasks) == []
    only_books = task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["books"]))
    assert [t.requeued_from for t in (await stub.RequeueTasks(pb.RequeueTasksRequest(filter=only_books))).tasks] == [4]
    assert (await stub.ListTasks(pb.ListTasksRequest(limit=0))).total == 7


async def test_bad_requests_are_refused_and_store_nothing(service, stub):
    await history(service, stub)
    assert await error_of(stub.RequeueTasks(pb.RequeueTasksRequest())) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "missing_task_filters",
        "Query parameters to filter the tasks to requeue are missing. Available query parameters are: `uids`,"
        " `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`,"
        " `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
    )
    assert (await stub.ListTasks(pb.ListTasksRequest(limit=0))).total == 6


async def test_more_than_the_limit_is_refused_whole(service, stub):
    batch = pb.EnqueueTasksRequest(tasks=[addition("movies", 1)] * 1_000)
    await stub.EnqueueTasks(batch)
    await stub.EnqueueTasks(batch)
    await stub.CancelTasks(pb.CancelTasksRequest(filter=every(1)))
    await service.scheduler.tick()
    assert await error_of(stub.RequeueTasks(pb.RequeueTasksRequest(filter=every(5)))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "too_many_tasks_to_requeue",
        f"2,000 failed or canceled tasks match; at most {MAX_REQUEUE:,} are requeued at once. Narrow the filter"
        " (`uids`, `indexUids`, `types`, dates) and requeue in parts.",
    )
    assert (await stub.ListTasks(pb.ListTasksRequest(limit=0))).total == 2_001
    part = task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=list(range(1_000))))
    assert len((await stub.RequeueTasks(pb.RequeueTasksRequest(filter=part))).tasks) == 1_000


async def test_a_scoped_key_requeues_what_it_sees_with_the_requeue_action(config, clock):
    service = await app.start(dataclasses.replace(config, master_key=MASTER), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            from taskhub.v1 import task_service_pb2_grpc

            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            admin = key_service_pb2_grpc.KeyServiceStub(channel)
            master = (("authorization", f"Bearer {MASTER}"),)
            await history(service, stub, master)

            async def key(actions, indexes):
                made = await admin.CreateKey(kpb.CreateKeyRequest(actions=actions, indexes=indexes), metadata=master)
                return (("authorization", f"Bearer {made.key.key}"),)

            failed = pb.RequeueTasksRequest(filter=every(4))
            # `tasks.cancel` or `tasks.enqueue` are not enough; `tasks.requeue` and `tasks.*` are.
            for actions in (["tasks.cancel"], ["tasks.enqueue", "tasks.get"]):
                assert (await error_of(stub.RequeueTasks(failed, metadata=await key(actions, ["*"]))))[
                    1
                ] == "invalid_api_key"
            books = await key(["tasks.requeue"], ["books"])
            assert [t.requeued_from for t in (await stub.RequeueTasks(failed, metadata=books)).tasks] == [4]
            movies = await key(["tasks.*"], ["mov*"])
            assert [t.requeued_from for t in (await stub.RequeueTasks(failed, metadata=movies)).tasks] == [0]
    finally:
        await service.stop(0)


# -- HTTP ---------------------------------------------------------------------------


async def test_http_requeue(service, stub, http):
    await history(service, stub)
    response = await http.post("/tasks/requeue?statuses=failed&indexUids=movies")
    assert response.status_code == 202
    [task] = response.json()["results"]
    assert task == {
        "uid": 6,
        "indexUid": "movies",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "canceledBy": None,
        "details": {"receivedDocuments": 1, "indexedDocuments": None},
        "error": None,
        "duration": None,
        "enqueuedAt": task["enqueuedAt"],
        "startedAt": None,
        "finishedAt": None,
        "requeuedFrom": 0,
    }
    # Shown on the task itself; a task never requeued has no such key.
    assert (await http.get("/tasks/6")).json() == task
    assert "requeuedFrom" not in (await http.get("/tasks/0")).json()
    # /tasks/cancel's filter errors.
    for query, code in (
        ("", "missing_task_filters"),
        ("statuses=lost", "invalid_task_statuses"),
        ("uids=x", "invalid_task_uids"),
        ("colour=red", "bad_request"),
    ):
        refused = await http.post(f"/tasks/requeue?{query}")
        cancel = await http.post(f"/tasks/cancel?{query}")
        assert (refused.status_code, refused.json()["code"]) == (400, code)
        if code != "missing_task_filters":
            assert refused.json() == cancel.json()
    assert (await http.get("/tasks?limit=0")).json()["total"] == 7


# -- the Python client and the CLI -------------------------------------------------------


async def test_the_client_and_the_cli_requeue(service, stub):
    from taskhub.client import AsyncTaskHubClient

    await history(service, stub)
    async with AsyncTaskHubClient(service.grpc_target) as client:
        new = await client.requeue_tasks(statuses=["canceled"])
    assert [(t.uid, t.requeued_from, t.to_dict()["requeuedFrom"]) for t in new] == [(6, 1, 1)]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "taskhub.server.cli", "tasks", "--target", service.grpc_target, "requeue"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=60)

    import asyncio

    done = await asyncio.to_thread(run, "--index-uids", "books", "--json")
    assert done.returncode == 0, done.stderr
    [task] = json.loads(done.stdout)["results"]
    assert (task["uid"], task["requeuedFrom"], task["indexUid"]) == (7, 4, "books")
    done = await asyncio.to_thread(run, "--statuses", "failed", "--uids", "0")
    assert (done.returncode, done.stdout) == (
        0,
        "enqueued task 8 (documentAdditionOrUpdate on movies), requeued from task 0\n",
    )
    done = await asyncio.to_thread(run, "--statuses", "succeeded")
    assert (done.returncode, done.stdout) == (0, "no failed or canceled task matches\n")
    done = await asyncio.to_thread(run)
    assert done.returncode != 0 and "missing_task_filters" in done.stderr


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch):
    monkeypatch.delenv("TASKHUB_API_KEY", raising=False)
