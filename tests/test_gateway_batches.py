"""Batches end to end: the rules that open and close them, seen through GET /batches and /batches/{uid}.

A real gRPC server over a real SQLite file, the gateway in-process, the fake clock; tasks move only
through public paths (enqueue, lease, renew, complete, release, cancel, delete, tick, restart).
"""

from __future__ import annotations

import grpc

from conftest import MASTER_KEY
from gateway_bodies import error, post_task
from helpers import error_of, finish, start
from taskhub.server import app
from taskhub.server.batch import ProgressStep
from taskhub.server.model import TaskStatus, TaskType
from taskhub.server.rules.leasing import MAX_LEASE
from taskhub.v1 import batch_pb2, worker_service_pb2 as wpb, worker_service_pb2_grpc

BATCH_KEYS = ["uid", "progress", "details", "stats", "duration", "startedAt", "finishedAt", "batchStrategy"]
EMPTY = {"results": [], "total": 0, "limit": 20, "from": None, "next": None}


async def get(http, path: str) -> dict:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def lease_all(service, index: str = "movies", max_tasks: int | None = None, worker: str = "tests"):
    """A worker's lease of what it may take, through the scheduler's public `lease`."""
    return await service.scheduler.lease(
        worker=worker, index_uids=frozenset({index}), max_tasks=max_tasks, duration=MAX_LEASE
    )


async def test_no_batch_answers_meilisearchs_empty_list(http):
    assert (await http.get("/batches")).text == '{"results":[],"total":0,"limit":20,"from":null,"next":null}'


async def test_a_lease_opens_a_batch_its_tasks_show_and_completion_closes_it(http, service):
    never_run = await post_task(http, index_uid="books")
    before = await get(http, f"/tasks/{never_run}")
    await post_task(http, details={"receivedDocuments": 3})
    await post_task(http, details={"receivedDocuments": 4})
    lease = await lease_all(service)
    assert lease.batch_uid == 0 and [t.uid for t in lease.tasks] == [1, 2]

    task = await get(http, "/tasks/1")
    assert list(task)[-3:] == ["finishedAt", "batchUid", "worker"] and task["batchUid"] == 0
    assert await get(http, f"/tasks/{never_run}") == before and "batchUid" not in before
    body = await get(http, "/batches/0")
    assert body == {
        "uid": 0,
        "progress": {"steps": [], "percentage": 0.0},
        "details": {"receivedDocuments": 7, "indexedDocuments": None},
        "stats": {
            "totalNbTasks": 2,
            "status": {"processing": 2},
            "types": {"documentAdditionOrUpdate": 2},
            "indexUids": {"movies": 2},
        },
        "duration": None,
        "startedAt": task["startedAt"],
        "finishedAt": None,
        # Task 0 of `books` is still enqueued elsewhere.
        "batchStrategy": "batched all enqueued tasks for index `movies`",
        "lease": {"worker": "tests", "state": "active"},
    }
    assert list(body) == [*BATCH_KEYS, "lease"]

    await service.scheduler.complete(
        lease.token,
        {
            1: (TaskType.DOCUMENT_ADDITION_OR_UPDATE, {"indexedDocuments": 3}, None),
            2: (None, None, {"message": "bad", "code": "c", "type": "internal"}),
        },
    )
    done = await get(http, "/tasks/1")
    body = await get(http, "/batches/0")
    assert body == {
        "uid": 0,
        "progress": None,
        "details": {"receivedDocuments": 7, "indexedDocuments": 3},
        "stats": {
            "totalNbTasks": 2,
            "status": {"succeeded": 1, "failed": 1},
            "types": {"documentAdditionOrUpdate": 2},
            "indexUids": {"movies": 2},
        },
        "duration": done["duration"],
        "startedAt": done["startedAt"],
        "finishedAt": done["finishedAt"],
        "batchStrategy": "batched all enqueued tasks for index `movies`",
        "lease": {"worker": "tests", "state": "completed"},
    }
    assert (await get(http, "/tasks/2"))["batchUid"] == 0


async def test_batch_strategies(http, service):
    await post_task(http, "indexCreation", details={"primaryKey": None})
    await start(service, 0)
    await finish(service, 0)
    body = await get(http, "/batches/0")
    assert body["batchStrategy"] == (
        "created batch containing only task with id 0 of type `indexCreation` that cannot be batched with any other task."
    )
    assert body["details"] == {}  # a null primary key is dropped once the batch ended
    for _ in range(3):
        await post_task(http)
    await post_task(http, "settingsUpdate", details={"rankingRules": ["words"]})
    first = await lease_all(service, max_tasks=2)
    assert (await get(http, "/batches/1"))["batchStrategy"] == "batched up to configured batch limit of 2 tasks"
    await service.scheduler.complete(first.token, {1: (None, None, None), 2: (None, None, None)})
    second = await lease_all(service)
    assert (await get(http, "/batches/2"))["batchStrategy"] == (
        "stopped before task with id 4 because it is a settings change which cannot be batched with document operations"
    )
    await service.scheduler.complete(second.token, {3: (None, None, None)})
    await lease_all(service)
    assert (await get(http, "/batches/3"))["batchStrategy"] == "batched all enqueued tasks"


async def test_progress_comes_with_renewals_and_a_bad_report_is_refused_whole(http, service, channel):
    workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
    await post_task(http)
    lease = (await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w1"))).lease
    assert lease.batch_uid == 0
    steps = [
        batch_pb2.BatchProgressStep(current_step="processing tasks", finished=1, total=4),
        batch_pb2.BatchProgressStep(current_step="indexing", finished=50, total=100),
    ]
    await workers.RenewLease(wpb.RenewLeaseRequest(token=lease.token, progress=batch_pb2.BatchProgress(steps=steps)))
    expected = {
        "steps": [
            {"currentStep": "processing tasks", "finished": 1, "total": 4},
            {"currentStep": "indexing", "finished": 50, "total": 100},
        ],
        "percentage": 37.5,
    }
    assert (await get(http, "/batches/0"))["progress"] == expected
    await workers.RenewLease(wpb.RenewLeaseRequest(token=lease.token))  # no progress: the last one stays
    assert (await get(http, "/batches/0"))["progress"] == expected
    for bad, message in (
        ([("x", 0, 0)], "The step `x` has a total of 0; it must be at least 1."),
        ([("x", 5, 4)], "The step `x` finished 5 of 4; it must be between 0 and its total."),
        ([("x", 0, 1)] * 17, "A progress report holds at most 16 steps, not 17."),
        ([("n" * 300, 0, 1)], "A progress step's name takes 1 to 256 bytes, not 300."),
    ):
        report = batch_pb2.BatchProgress(
            steps=[batch_pb2.BatchProgressStep(current_step=n, finished=f, total=t) for n, f, t in bad]
        )
        assert await error_of(workers.RenewLease(wpb.RenewLeaseRequest(token=lease.token, progress=report))) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_batch_progress",
            message,
        )
    assert (await get(http, "/batches/0"))["progress"] == expected
    await service.scheduler.complete(lease.token, {0: (None, None, None)})
    assert (await get(http, "/batches/0"))["progress"] is None


async def test_release_and_expiry_close_batches_and_tasks_keep_their_batch_until_taken_again(http, service, clock):
    await post_task(http)
    await post_task(http)
    first = await lease_all(service)
    await service.scheduler.release(first.token)
    body = await get(http, "/batches/0")
    assert (body["stats"]["status"], body["lease"], body["progress"]) == (
        {"enqueued": 2},
        {"worker": "tests", "state": "released"},
        None,
    )
    assert body["details"] == {"receivedDocuments": 20}
    assert (await get(http, "/tasks/0"))["batchUid"] == 0  # kept while back in the queue

    second = await service.scheduler.lease(worker="tests", duration=10_000_000)
    assert second.batch_uid == 1 and (await get(http, "/tasks/0"))["batchUid"] == 1
    clock.now += 11_000_000
    await service.scheduler.tick()
    body = await get(http, "/batches/1")
    assert (body["stats"]["status"], body["lease"]["state"]) == ({"enqueued": 2}, "expired")
    listed = await get(http, "/batches?uids=0")
    assert [b["uid"] for b in listed["results"]] == [1, 0] and listed["total"] == 2
    tasks = await get(http, "/tasks?batchUids=1")
    assert [t["uid"] for t in tasks["results"]] == [1, 0]


async def test_a_cancelation_stops_a_lease_batch_and_takes_the_canceled_tasks_into_its_own(http, service):
    await post_task(http, details={"receivedDocuments": 2})
    await post_task(http, details={"receivedDocuments": 5})
    await post_task(http, index_uid="books")  # 2: a lease of its own, untouched
    await lease_all(service)
    await lease_all(service, index="books")
    response = await http.post("/tasks/cancel?uids=0")
    cancel = response.json()["taskUid"]
    await service.scheduler.tick()
    stopped = await get(http, "/batches/0")
    assert (stopped["stats"]["status"], stopped["lease"]["state"]) == ({"enqueued": 1, "canceled": 1}, "canceled")
    body = await get(http, "/batches/2")
    canceled_task = await get(http, "/tasks/0")
    cancel_task = await get(http, f"/tasks/{cancel}")
    assert body == {
        "uid": 2,
        "progress": None,
        "details": {
            "receivedDocuments": 2,
            "indexedDocuments": 0,
            "matchedTasks": 1,
            "canceledTasks": 1,
            "originalFilter": "?uids=0",
        },
        "stats": {
            "totalNbTasks": 2,
            "status": {"succeeded": 1, "canceled": 1},
            "types": {"documentAdditionOrUpdate": 1, "taskCancelation": 1},
            "indexUids": {"movies": 1},
        },
        "duration": cancel_task["duration"],
        "startedAt": cancel_task["startedAt"],
        "finishedAt": cancel_task["finishedAt"],
        "batchStrategy": f"created batch containing only task with id {cancel} of type `taskCancelation`"
        " that cannot be batched with any other task.",
    }
    assert canceled_task["batchUid"] == cancel_task["batchUid"] == 2
    assert (await get(http, "/tasks/1"))["batchUid"] == 0  # sent back, keeps the stopped batch
    assert (await get(http, "/batches/1"))["stats"]["status"] == {"processing": 1}
    assert [b["uid"] for b in (await get(http, f"/batches?canceledBy={cancel}"))["results"]] == [2]
    assert (await get(http, "/batches?canceledBy=1")) == EMPTY  # not a cancelation
    # `indexUids` never matches a batch holding a task of no index.
    assert [b["uid"] for b in (await get(http, "/batches?indexUids=movies"))["results"]] == [0]


async def test_server_tasks_run_in_batches_of_their_own_and_deletion_forgets_batches(http, service):
    await post_task(http)
    await start(service, 0)
    await finish(service, 0, details={"indexedDocuments": 10})
    dump = (await http.post("/dumps")).json()["taskUid"]
    await service.scheduler.tick()
    dump_task = await get(http, f"/tasks/{dump}")
    body = await get(http, f"/batches/{dump_task['batchUid']}")
    assert body["details"] == {"dumpUid": dump_task["details"]["dumpUid"]}
    assert body["stats"] == {
        "totalNbTasks": 1,
        "status": {"succeeded": 1},
        "types": {"dumpCreation": 1},
        "indexUids": {},
    }
    assert "lease" not in body
    snapshot = (await http.post("/snapshots")).json()["taskUid"]
    await service.scheduler.tick()
    assert (await get(http, f"/batches/{(await get(http, f'/tasks/{snapshot}'))['batchUid']}"))["details"] == {}

    deletion = (await http.delete("/tasks?uids=0")).json()["taskUid"]
    await service.scheduler.tick()
    deleted = await get(http, f"/tasks/{deletion}")
    assert (await get(http, f"/batches/{deleted['batchUid']}"))["details"] == {
        "matchedTasks": 1,
        "deletedTasks": 1,
        "originalFilter": "?uids=0",
    }
    response = await http.get("/batches/0")  # its only task is gone, so is it
    assert (response.status_code, response.json()) == (404, error("batch_not_found", "Batch `0` not found."))
    assert (await get(http, "/batches"))["total"] == 3


async def test_a_restart_ends_open_batches_as_lost_and_never_reuses_uids(config, clock):
    service = await app.start(config, background=False, clock=clock)
    await service.scheduler.enqueue(TaskType.DOCUMENT_ADDITION_OR_UPDATE, "movies", {"receivedDocuments": 1})
    await service.scheduler.renew((await lease_all(service)).token, None, [ProgressStep("a", 1, 2)])
    await service.stop(0)
    service = await app.start(config, background=False, clock=clock)
    try:
        ended = "lost"
        if service.scheduler.replica.shared:
            # Replicas (PostgreSQL): a start ends no lease; the batch stays open until its lease expires.
            batch = await service.scheduler.get_batch(0)
            assert (batch.finished_at, batch.progress) == (None, [ProgressStep("a", 1, 2)])
            clock.now += 2 * MAX_LEASE
            await service.scheduler.tick()
            ended = "expired"
        batch = await service.scheduler.get_batch(0)
        assert (batch.statuses, batch.lease_state, batch.progress) == ({TaskStatus.ENQUEUED: 1}, ended, None)
        assert batch.finished_at is not None
        again = await lease_all(service)
        assert again.batch_uid == 1
    finally:
        await service.stop(0)


async def test_paging_as_meilisearchs_list_batches_pagination_and_reverse(http, service):
    for i in range(10):
        await post_task(http, "indexCreation", index_uid=f"i{i}", details={"primaryKey": None})
        await start(service, i)
        await finish(service, i)

    async def uids(query: str) -> tuple[list[int], int, int | None, int | None]:
        body = await get(http, "/batches?" + query)
        return [b["uid"] for b in body["results"]], body["total"], body["from"], body["next"]

    assert await uids("limit=3") == ([9, 8, 7], 10, 9, 6)
    assert await uids("limit=3&from=1") == ([1, 0], 10, 1, None)
    assert await uids("limit=3&reverse=true") == ([0, 1, 2], 10, 0, 3)
    assert await uids("limit=3&from=8&reverse=true") == ([8, 9], 10, 8, None)
    assert await uids("limit=0") == ([], 10, None, 9)
    assert await uids("batchUids=2,5&statuses=succeeded&types=indexCreation") == ([5, 2], 2, 5, None)
    assert await uids("indexUids=i3,i4&uids=4") == ([4], 1, 4, None)
    assert await uids("statuses=*&types=*&indexUids=*&uids=*&batchUids=*") == (
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        10,
        9,
        None,
    )
    assert await uids("statuses=failed") == ([], 0, None, None)
    third = await get(http, "/batches/3")
    assert await uids(f"afterStartedAt={third['startedAt']}&limit=1") == ([9], 6, 9, 8)
    assert await uids(f"beforeFinishedAt={third['finishedAt']}") == ([2, 1, 0], 3, 2, None)


async def test_errors_in_meilisearchs_shapes(http):
    for path, status, body in (
        (
            "/batches?batchUids=doggo",
            400,
            error(
                "invalid_batch_uids",
                "Invalid value in parameter `batchUids`: could not parse `doggo` as a positive integer",
            ),
        ),
        (
            "/batches/doggo",
            400,
            error("invalid_batch_uids", "Batch uid `doggo` is invalid. It should only contain numeric characters."),
        ),
        ("/batches/4294967295", 404, error("batch_not_found", "Batch `4294967295` not found.")),
        (
            "/batches/4294967296",
            400,
            error(
                "invalid_batch_uids", "Batch uid `4294967296` is invalid. It should only contain numeric characters."
            ),
        ),
        (
            "/batches?limit=doggo",
            400,
            error(
                "invalid_task_limit",
                "Invalid value in parameter `limit`: could not parse `doggo` as a positive integer",
            ),
        ),
        (
            "/batches?lol=pied",
            400,
            error(
                "bad_request",
                "Unknown parameter `lol`: expected one of `limit`, `from`, `reverse`, `batchUids`, `uids`, `canceledBy`,"
                " `types`, `statuses`, `indexUids`, `afterEnqueuedAt`, `beforeEnqueuedAt`, `afterStartedAt`,"
                " `beforeStartedAt`, `afterFinishedAt`, `beforeFinishedAt`",
            ),
        ),
        (
            "/tasks/events?batchUids=1",
            400,
            error(
                "bad_request",
                "Unknown parameter `batchUids`: expected one of `uids`, `canceledBy`, `types`, `statuses`, `indexUids`,"
                " `afterEnqueuedAt`, `beforeEnqueuedAt`, `afterStartedAt`, `beforeStartedAt`, `afterFinishedAt`,"
                " `beforeFinishedAt`, `after`",
            ),
        ),
    ):
        response = await http.get(path)
        assert (response.status_code, response.json()) == (status, body), path
    assert (await http.post("/batches")).status_code == 405


async def test_batch_uids_filter_cancelations_and_deletions(http, service):
    await post_task(http)
    await post_task(http, index_uid="books")
    await start(service, 0)
    response = await http.post("/tasks/cancel?batchUids=0")
    cancel = response.json()["taskUid"]
    await service.scheduler.tick()
    task = await get(http, f"/tasks/{cancel}")
    assert task["details"] == {"matchedTasks": 1, "canceledTasks": 1, "originalFilter": "?batchUids=0"}
    assert (await get(http, "/tasks/0"))["status"] == "canceled"
    assert (await get(http, "/tasks/1"))["status"] == "enqueued"
    response = await http.post("/tasks/cancel?lol=1")
    assert response.json()["message"].startswith("Unknown parameter `lol`: expected one of `uids`, `batchUids`, ")


async def test_a_scoped_key_sees_only_its_indexes_batches(secured_http, secured_service):
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    for index in ("movies", "books", "movies"):
        await secured_http.post(
            "/tasks",
            json={"type": "documentAdditionOrUpdate", "indexUid": index, "details": {"receivedDocuments": 1}},
            headers=master,
        )
    await lease_all(secured_service, max_tasks=1)
    await lease_all(secured_service, index="books")
    await secured_http.post("/tasks/cancel?uids=1", headers=master)
    await secured_service.scheduler.tick()
    created = await secured_http.post(
        "/keys", json={"actions": ["tasks.get"], "indexes": ["movies"], "expiresAt": None}, headers=master
    )
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    assert (await secured_http.get("/batches")).status_code == 401
    body = (await secured_http.get("/batches", headers=key)).json()
    assert ([b["uid"] for b in body["results"]], body["total"]) == ([0], 1)
    for uid in (1, 2):
        response = await secured_http.get(f"/batches/{uid}", headers=key)
        assert (response.status_code, response.json()["code"]) == (404, "batch_not_found")
    assert (await secured_http.get("/batches/0", headers=key)).status_code == 200
    assert (await secured_http.get("/batches", headers=master)).json()["total"] == 3


async def test_a_watch_refuses_batch_uids_and_a_filter_caps_them(stub):
    from taskhub.v1 import task_pb2, task_service_pb2 as pb

    watch = stub.WatchTasks(pb.WatchTasksRequest(filter=task_pb2.TaskFilter(batch_uids=task_pb2.UidSet(uids=[0]))))
    assert await error_of(watch.read()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_batch_uids",
        "`batchUids` cannot filter a watch.",
    )
    too_many = task_pb2.TaskFilter(batch_uids=task_pb2.UidSet(uids=range(10_001)))
    code, reason, _ = await error_of(stub.ListBatches(pb.ListBatchesRequest(filter=too_many)))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_batch_uids")
