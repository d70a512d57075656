"""The workers in view over a real server: OperationsService (ListLeases, GetActivity) over gRPC and
`GET /leases`, `GET /activity` through the gateway, with real leases taken, renewed, completed and expired."""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import pytest
from google.protobuf import duration_pb2

from conftest import MASTER_KEY
from helpers import enqueue, error_of
from taskhub.server.rules.leasing import SECOND
from taskhub.v1 import (
    errors_pb2,
    operations_service_pb2 as opb,
    operations_service_pb2_grpc,
    task_pb2,
    task_service_pb2 as pb,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def workers(channel) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(channel)


@pytest.fixture
def operations(channel) -> operations_service_pb2_grpc.OperationsServiceStub:
    return operations_service_pb2_grpc.OperationsServiceStub(channel)


def seconds(value: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(value))


async def lease(workers, worker: str, index_uid: str, **fields) -> wpb.LeaseTasksResponse:
    request = wpb.LeaseTasksRequest(worker=worker, index_uids=task_pb2.IndexUidSet(index_uids=[index_uid]), **fields)
    return await workers.LeaseTasks(request)


def held(response: opb.ListLeasesResponse) -> list[tuple[str, int, list[int], list[int]]]:
    """Each lease as (worker, batch uid, task uids, attempts)."""
    return [
        (lease.worker, lease.batch_uid, [t.uid for t in lease.tasks], [t.attempts for t in lease.tasks])
        for lease in response.leases
    ]


async def test_leases_show_who_holds_what_until_completed_or_expired(service, stub, workers, operations, clock):
    for index in ("movies", "movies", "books"):
        await enqueue(stub, index)
    assert held(await operations.ListLeases(opb.ListLeasesRequest())) == []
    alpha = await lease(workers, "alpha", "movies", lease_duration=seconds(60))
    beta = await lease(workers, "beta", "books", lease_duration=seconds(30))
    assert [t.uid for t in alpha.tasks] == [0, 1] and [t.uid for t in beta.tasks] == [2]

    listed = await operations.ListLeases(opb.ListLeasesRequest())
    leases = listed.leases
    assert listed.total == 2
    assert held(listed) == [
        ("alpha", alpha.lease.batch_uid, [0, 1], [0, 0]),
        ("beta", beta.lease.batch_uid, [2], [0]),
    ]
    for shown, taken in zip(leases, (alpha, beta), strict=True):
        assert shown.deadline == taken.lease.deadline  # the token itself is never shown
        assert shown.since == taken.tasks[0].started_at
        assert [(t.index_uid, t.type_name) for t in shown.tasks] == [
            (t.index_uid, "documentAdditionOrUpdate") for t in taken.tasks
        ]
    assert (await stub.GetTask(pb.GetTaskRequest(uid=2))).task.worker == "beta"
    # A limit takes the oldest; the total counts them all.
    first = await operations.ListLeases(opb.ListLeasesRequest(limit=1))
    assert (held(first), first.total) == (held(listed)[:1], 2)
    for bad in (0, 1001):
        code, reason, _ = await error_of(operations.ListLeases(opb.ListLeasesRequest(limit=bad)))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_lease_limit")

    # A renewal moves the deadline shown.
    renewed = await workers.RenewLease(wpb.RenewLeaseRequest(token=alpha.lease.token, lease_duration=seconds(90)))
    assert (await operations.ListLeases(opb.ListLeasesRequest())).leases[0].deadline == renewed.deadline

    # Completed: the lease is gone, the task still names its worker.
    await workers.CompleteTasks(
        wpb.CompleteTasksRequest(token=alpha.lease.token, outcomes=[wpb.TaskOutcome(uid=0), wpb.TaskOutcome(uid=1)])
    )
    assert held(await operations.ListLeases(opb.ListLeasesRequest())) == [("beta", beta.lease.batch_uid, [2], [0])]
    assert (await stub.GetTask(pb.GetTaskRequest(uid=0))).task.worker == "alpha"

    # Expired: gone too; the next worker's lease shows the attempt spent, and the task names that worker.
    clock.now += 31 * SECOND
    # Past its deadline but not swept yet: still listed, its deadline in the past says so.
    [overdue] = (await operations.ListLeases(opb.ListLeasesRequest())).leases
    assert overdue.worker == "beta" and overdue.deadline.ToMicroseconds() < clock.now
    await service.scheduler.tick()
    assert held(await operations.ListLeases(opb.ListLeasesRequest())) == []
    gamma = await lease(workers, "gamma", "books")
    assert held(await operations.ListLeases(opb.ListLeasesRequest())) == [("gamma", gamma.lease.batch_uid, [2], [1])]
    assert (await stub.GetTask(pb.GetTaskRequest(uid=2))).task.worker == "gamma"


async def test_activity_counts_tasks_finished_each_second_and_tasks_per_index(
    service, stub, workers, operations, clock
):
    for index in ("movies", "movies", "books", "books", "music"):
        await enqueue(stub, index)
    first = await lease(workers, "w", "movies")
    await workers.CompleteTasks(
        wpb.CompleteTasksRequest(
            token=first.lease.token,
            outcomes=[
                wpb.TaskOutcome(uid=0),
                wpb.TaskOutcome(uid=1, error=errors_pb2.TaskError(message="no", code="bad", type="invalid_request")),
            ],
        )
    )
    clock.now += 3 * SECOND  # three seconds later
    second = await lease(workers, "w", "books")
    await workers.CompleteTasks(
        wpb.CompleteTasksRequest(token=second.lease.token, outcomes=[wpb.TaskOutcome(uid=t.uid) for t in second.tasks])
    )
    await stub.CancelTasks(
        pb.CancelTasksRequest(filter=task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["music"])))
    )
    await service.scheduler.tick()  # runs the cancelation

    found = await operations.GetActivity(opb.GetActivityRequest())
    assert len(found.succeeded) == len(found.failed) == len(found.canceled) == 900
    tasks = {t.uid: t for t in (await stub.ListTasks(pb.ListTasksRequest())).results}
    since = found.since.ToMicroseconds()
    assert since % SECOND == 0 and since + 900 * SECOND > clock.now >= since + 899 * SECOND

    def second_of(uid: int) -> int:
        return (tasks[uid].finished_at.ToMicroseconds() - since) // SECOND

    expected = {"succeeded": [0] * 900, "failed": [0] * 900, "canceled": [0] * 900}
    for uid, status in (
        (0, "succeeded"),
        (1, "failed"),
        (2, "succeeded"),
        (3, "succeeded"),
        (4, "canceled"),
        (5, "succeeded"),
    ):
        expected[status][second_of(uid)] += 1
    assert {s: list(getattr(found, s)) for s in expected} == expected
    assert second_of(2) - second_of(0) == 3  # the two batches, three seconds apart
    counts = [
        (c.index_uid if c.HasField("index_uid") else None, c.succeeded, c.failed, c.canceled) for c in found.indexes
    ]
    # Task 5 is the cancelation: a global task, last.
    assert counts == [("books", 2, 0, 0), ("movies", 1, 1, 0), ("music", 0, 0, 1), (None, 1, 0, 0)]

    short = await operations.GetActivity(opb.GetActivityRequest(seconds=2))
    assert len(short.succeeded) == 2 and sum(short.canceled) == 1 and sum(short.succeeded) == 3
    for bad in (0, 3601):
        code, reason, _ = await error_of(operations.GetActivity(opb.GetActivityRequest(seconds=bad)))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_activity_seconds")


async def test_http_routes_show_real_leases_and_activity(http, service, stub, workers):
    await enqueue(stub, "movies")
    assert (await http.get("/leases")).json() == {"results": [], "total": 0}
    taken = await lease(workers, "alpha", "movies")
    body = (await http.get("/leases")).json()
    task = (await http.get("/tasks/0")).json()
    assert body == {
        "results": [
            {
                "worker": "alpha",
                "batchUid": taken.lease.batch_uid,
                "since": task["startedAt"],
                "deadline": body["results"][0]["deadline"],
                "tasks": [{"uid": 0, "indexUid": "movies", "type": "documentAdditionOrUpdate", "attempts": 0}],
            }
        ],
        "total": 1,
    }
    assert (await http.get("/leases?limit=1")).json() == body
    assert body["results"][0]["deadline"] > task["startedAt"] and task["worker"] == "alpha"
    await workers.CompleteTasks(wpb.CompleteTasksRequest(token=taken.lease.token, outcomes=[wpb.TaskOutcome(uid=0)]))
    assert (await http.get("/leases")).json() == {"results": [], "total": 0}

    activity = (await http.get("/activity?seconds=60")).json()
    assert list(activity) == ["since", "seconds", "finished", "indexes"] and activity["seconds"] == 60
    assert {k: sum(v) for k, v in activity["finished"].items()} == {"succeeded": 1, "failed": 0, "canceled": 0}
    assert activity["indexes"] == [
        {
            "indexUid": "movies",
            "statuses": {"enqueued": 0, "processing": 0, "succeeded": 1, "failed": 0, "canceled": 0},
        }
    ]
    assert len((await http.get("/activity")).json()["finished"]["failed"]) == 900
    for path, code in (
        ("/activity?seconds=0", "invalid_activity_seconds"),
        ("/activity?seconds=x", "invalid_activity_seconds"),
        ("/activity?minutes=1", "bad_request"),
        ("/leases?worker=a", "bad_request"),
        ("/leases?limit=0", "invalid_lease_limit"),
        ("/leases?limit=-1", "invalid_lease_limit"),
    ):
        response = await http.get(path)
        assert (response.status_code, response.json()["code"]) == (400, code), path


async def test_a_scoped_key_sees_the_leases_and_counts_of_its_indexes_only(secured_http, secured_service):
    async def key(actions, indexes) -> dict:
        created = await secured_http.post(
            "/keys", json={"actions": actions, "indexes": indexes, "expiresAt": None}, headers=MASTER
        )
        return {"Authorization": f"Bearer {created.json()['key']}"}

    for index in ("movies", "books"):
        body = {"type": "documentAdditionOrUpdate", "indexUid": index, "details": {"receivedDocuments": 1}}
        response = await secured_http.post("/tasks", json=body, headers=MASTER)
        assert response.status_code == 202, response.text
    scheduler = secured_service.scheduler
    for index in ("movies", "books"):
        assert await scheduler.lease(worker=f"w-{index}", index_uids=frozenset({index}))
    books = await key(["tasks.get"], ["books"])
    leases = (await secured_http.get("/leases", headers=books)).json()["results"]
    assert [(lease["worker"], [t["indexUid"] for t in lease["tasks"]]) for lease in leases] == [("w-books", ["books"])]
    assert len((await secured_http.get("/leases", headers=MASTER)).json()["results"]) == 2
    counts = (await secured_http.get("/activity", headers=books)).json()["indexes"]
    assert [(c["indexUid"], c["statuses"]["processing"]) for c in counts] == [("books", 1)]
    # `tasks.get` is needed; no key at all is refused.
    enqueuer = await key(["tasks.enqueue"], ["*"])
    for path in ("/leases", "/activity"):
        assert (await secured_http.get(path, headers=enqueuer)).status_code == 403
        assert (await secured_http.get(path)).status_code == 401


async def test_the_clients_and_the_cli_answer_what_the_gateway_answers(http, service, stub, workers):
    from taskhub.client import AsyncTaskHubClient, TaskHubClient
    from test_cli import environment

    for index in ("movies", "books"):
        await enqueue(stub, index)
    await lease(workers, "alpha", "movies")
    await lease(workers, "beta", "books")
    leases, activity = (await http.get("/leases")).json(), (await http.get("/activity?seconds=30")).json()
    async with AsyncTaskHubClient(service.grpc_target) as client:
        assert (await client.list_leases()).to_dict() == leases
        assert (await client.get_activity(seconds=30)).to_dict()["indexes"] == activity["indexes"]
        assert (await client.list_leases(limit=1)).total == 2
    with TaskHubClient(service.grpc_target) as client:
        assert (await asyncio.to_thread(client.list_leases)).to_dict() == leases
        found = await asyncio.to_thread(client.get_activity)
        assert len(found.finished["succeeded"]) == 900 and found.indexes["books"]["processing"] == 1

    async def cli(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "leases",
            *args,
            env=environment(TASKHUB_TARGET=service.grpc_target),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode, out.decode(), err.decode()

    code, out, err = await cli("--json")
    assert (code, err, json.loads(out)) == (0, "", leases)
    code, out, err = await cli("--limit", "1")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["WORKER", "BATCH", "TASKS", "SINCE", "(UTC)", "DEADLINE", "(UTC)"]
    assert lines[1].split()[:3] == ["alpha", "0", "0"] and lines[-1] == "1 of 2 leases"
