"""Delayed runs: `runAt` on enqueue over gRPC and HTTP; not leased before then, leased soon after, holding no index."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import grpc
import pytest
from google.protobuf import timestamp_pb2

from conftest import START
from helpers import details_for, error_of, restored_config
from taskhub.server import app
from taskhub.server.model import format_time
from taskhub.v1 import (
    task_pb2 as T,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

SECOND = 1_000_000


def at(micros: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=micros // SECOND, nanos=micros % SECOND * 1_000)


def addition(index_uid: str = "movies", run_at: int | None = None) -> pb.EnqueueTaskRequest:
    request = pb.EnqueueTaskRequest(
        type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
        index_uid=index_uid,
        details=details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, received_documents=1),
    )
    if run_at is not None:
        request.run_at.CopyFrom(at(run_at))
    return request


@pytest.fixture
def workers(channel) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(channel)


async def leased(workers, **request) -> list[int]:
    response = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", **request))
    return [t.uid for t in response.tasks]


async def test_a_delayed_task_waits_enqueued_until_its_run_at(stub, workers, clock):
    run_at = START + 60 * SECOND
    uid = (await stub.EnqueueTask(addition(run_at=run_at))).task.task_uid
    task = (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task
    assert task.status == T.TASK_STATUS_ENQUEUED and task.run_at == at(run_at)
    assert not task.HasField("attempts") and not task.HasField("last_error")
    assert await leased(workers) == []
    clock.now = run_at - 2_000
    assert await leased(workers) == []
    clock.now = run_at
    assert await leased(workers) == [uid]


async def lease(workers, **request) -> wpb.LeaseTasksResponse:
    return await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", **request))


async def succeed(workers, response: wpb.LeaseTasksResponse) -> None:
    outcomes = [wpb.TaskOutcome(uid=t.uid) for t in response.tasks]
    await workers.CompleteTasks(wpb.CompleteTasksRequest(token=response.lease.token, outcomes=outcomes))


async def test_a_task_not_due_holds_no_index(stub, workers, clock):
    await stub.EnqueueTask(addition(run_at=START + 60 * SECOND))  # 0: waits
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="movies"))  # 1
    await stub.EnqueueTask(addition())  # 2: after 1 in its index
    first = await lease(workers)
    assert [t.uid for t in first.tasks] == [1]  # 0 does not hold `movies`
    assert await leased(workers) == []  # 2 waits for 1, which runs
    await succeed(workers, first)
    second = await lease(workers)
    assert [t.uid for t in second.tasks] == [2]  # and not for 0, still not due
    await succeed(workers, second)
    clock.now = START + 60 * SECOND
    assert await leased(workers) == [0]


async def test_tasks_that_fell_due_keep_their_index_order(stub, workers, clock):
    await stub.EnqueueTask(addition(run_at=START + 10 * SECOND))  # 0
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="movies"))  # 1
    await stub.EnqueueTask(addition())  # 2
    await stub.EnqueueTask(addition(run_at=START + 3_600 * SECOND))  # 3: still waits
    await stub.EnqueueTask(addition())  # 4
    first = await lease(workers)
    assert [t.uid for t in first.tasks] == [1]
    clock.now = START + 10 * SECOND
    await succeed(workers, first)
    # 0 is due now and older than 2: it heads the batch; 3 is skipped, 4 joins.
    assert await leased(workers) == [0, 2, 4]


async def test_a_cancelation_reaches_a_waiting_task(service, stub, workers, clock):
    await stub.EnqueueTask(addition(run_at=START + 60 * SECOND))
    canceled = await stub.CancelTasks(pb.CancelTasksRequest(filter=T.TaskFilter(uids=T.UidSet(uids=[0]))))
    assert await service.scheduler.tick() == 1
    task = (await stub.GetTask(pb.GetTaskRequest(uid=0))).task
    assert task.status == T.TASK_STATUS_CANCELED and task.canceled_by == canceled.task.task_uid
    clock.now = START + 61 * SECOND
    assert await leased(workers) == []


@pytest.mark.parametrize(
    ("run_at", "message"),
    [
        (START - 2 * 86_400 * SECOND, "is too far from now"),
        (START + 400 * 86_400 * SECOND, "is too far from now"),
    ],
)
async def test_a_run_at_too_far_from_now_is_refused_and_nothing_is_stored(stub, run_at, message):
    code, reason, text = await error_of(stub.EnqueueTask(addition(run_at=run_at)))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_run_at")
    assert text == (
        f"Invalid value in parameter `runAt`: `{format_time(run_at)}` {message}; a `runAt` lies from one day"
        " ago to 366 days ahead."
    )
    batch = pb.EnqueueTasksRequest(tasks=[addition(), addition(run_at=run_at)])
    code, reason, text = await error_of(stub.EnqueueTasks(batch))
    assert (reason, text.startswith("`tasks[1]`: Invalid value in parameter `runAt`")) == ("invalid_task_run_at", True)
    assert (await stub.ListTasks(pb.ListTasksRequest())).total == 0


async def test_a_run_at_off_the_calendar_or_on_a_server_task_is_refused(stub):
    request = addition()
    request.run_at.seconds = 2**62
    code, reason, _ = await error_of(stub.EnqueueTask(request))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_run_at")
    dump = pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION, run_at=at(START + SECOND))
    code, reason, text = await error_of(stub.EnqueueTask(dump))
    assert (reason, text) == (
        "invalid_task_run_at",
        "`runAt` applies to tasks workers run; the server runs `dumpCreation` tasks.",
    )
    assert (await stub.ListTasks(pb.ListTasksRequest())).total == 0


async def test_a_delayed_task_still_waits_after_a_restart_and_runs_when_due(config, clock):
    service = await app.start(config, background=False, clock=clock)
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        await task_service_pb2_grpc.TaskServiceStub(channel).EnqueueTask(addition(run_at=START + 60 * SECOND))
    await service.stop(0)
    service = await app.start(config, background=False, clock=clock)
    try:
        assert await service.scheduler.lease(worker="w") is None
        clock.now = START + 60 * SECOND
        lease = await service.scheduler.lease(worker="w")
        assert [t.uid for t in lease.tasks] == [0]
    finally:
        await service.stop(0)


async def test_a_waiting_lease_call_takes_a_task_as_it_falls_due(config):
    """The wall clock: no commit comes, yet the long-polling call answers within 100 ms of the task's time."""
    service = await app.start(dataclasses.replace(config), background=True)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
            due = time.time_ns() // 1_000 + 400_000
            await stub.EnqueueTask(addition(run_at=due))
            call = workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", wait={"seconds": 5}))
            response = await asyncio.wait_for(call, 6)
            assert [t.uid for t in response.tasks] == [0]
            late = response.tasks[0].started_at.ToMicroseconds() - due
            assert 0 <= late <= 100_000, f"leased {late} µs after its runAt"
    finally:
        await service.stop(0)


# -- HTTP ------------------------------------------------------------------


async def test_http_run_at_is_taken_and_shown_after_finished_at(http, clock):
    response = await http.post(
        "/tasks",
        json={"type": "indexCreation", "indexUid": "movies", "runAt": "2023-11-14T23:13:20.5+01:00"},
    )
    assert response.status_code == 202, response.text
    task = (await http.get("/tasks/0")).json()
    assert list(task)[-2:] == ["finishedAt", "runAt"]
    assert task["runAt"] == "2023-11-14T22:13:20.500000Z"
    # A task with no runAt keeps Meilisearch's eleven fields, byte for byte.
    await http.post("/tasks", json={"type": "indexCreation", "indexUid": "books", "runAt": None})
    assert "runAt" not in (await http.get("/tasks/1")).json()


@pytest.mark.parametrize("value", ["tomorrow", "2023-11-15", 17, "2023-11-14T25:00:00Z", "9999-12-31T23:59:59Z"])
async def test_http_a_bad_run_at_is_a_400_and_nothing_is_stored(http, value):
    response = await http.post("/tasks", json={"type": "indexCreation", "indexUid": "movies", "runAt": value})
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["type"]) == ("invalid_task_run_at", "invalid_request")
    assert body["message"].startswith("Invalid value in parameter `runAt`: ")
    assert (await http.get("/tasks")).json()["total"] == 0


async def test_a_waiting_task_stays_waiting_in_a_dump_and_a_snapshot(service, stub, config, clock, tmp_path, request):
    await stub.EnqueueTask(addition(run_at=START + 60 * SECOND))
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION))
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_SNAPSHOT_CREATION))
    await service.scheduler.tick()
    dump = next((tmp_path / "dumps").glob("*.dump"))
    snapshot = next((tmp_path / "snapshots").glob("*.snapshot"))
    for flag, path in (("import_dump", dump), ("import_snapshot", snapshot)):
        restored = await app.start(
            restored_config(config, flag, path, tmp_path, request), background=False, clock=clock
        )
        try:
            await restored.scheduler.tick()  # the server tasks the copy was taken with (they outrank workers')
            assert (await restored.scheduler.get_task(0)).extra == {"runAt": START + 60 * SECOND}
            assert await restored.scheduler.lease(worker="w") is None
            clock.now = START + 60 * SECOND
            assert [t.uid for t in (await restored.scheduler.lease(worker="w")).tasks] == [0]
            clock.now = START
        finally:
            await restored.stop(0)
