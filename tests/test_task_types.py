"""Task types registered at the server (`--task-types`): enqueued, filtered, leased, finished and rendered
through the gateway and gRPC, with their details kept as given; bad names refuse the start."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import grpc
import httpx
import pytest

from conftest import gateway_client
from gateway_bodies import at, error
from helpers import error_of
from taskhub.errors import TaskHubError
from taskhub.server import app
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

T = task_pb2
MEILISEARCH_TYPES = (
    "`indexCreation`, `indexUpdate`, `indexDeletion`, `indexSwap`, `documentAdditionOrUpdate`,"
    " `documentDeletion`, `settingsUpdate`, `dumpCreation`, `taskCancelation`, `taskDeletion`, `snapshotCreation`"
)
# Key order not sorted, integers past 2**53, nesting, unicode: all must come back as given.
GIVEN = '{"to":"a@b.example","big":123456789012345678901234567890,"zeta":1,"alpha":{"b":[1,2.5,null],"a":"é"}}'


@pytest.fixture
async def typed(config, clock):
    """A service with `sendEmail` and `resizeImage` registered, and no background loop."""
    running = await app.start(
        dataclasses.replace(config, task_types="sendEmail,resizeImage"), background=False, clock=clock
    )
    yield running
    await running.stop(0)


@pytest.fixture
async def typed_http(typed):
    async with gateway_client(typed.grpc_target) as client:
        yield client


@pytest.fixture
async def channel(typed):
    async with grpc.aio.insecure_channel(typed.grpc_target) as chan:
        yield chan


def post(http, body: str, query: str = ""):
    return http.post("/tasks" + query, content=body, headers={"content-type": "application/json"})


async def test_a_custom_task_is_enqueued_and_rendered_with_its_details_as_given(typed_http):
    body = '{"type": "sendEmail", "details": ' + GIVEN + "}"
    response = await post(typed_http, body)
    assert (response.status_code, response.json()) == (
        202,
        {"taskUid": 0, "indexUid": None, "status": "enqueued", "type": "sendEmail", "enqueuedAt": at(1)},
    )
    response = await typed_http.get("/tasks/0")
    assert response.status_code == 200
    # Key order, the large integer and the nesting survive the trip, as JSON text.
    pairs = dict(json.loads(response.text, object_pairs_hook=list))
    assert pairs["details"] == json.loads(GIVEN, object_pairs_hook=list)
    assert response.json() == {
        "uid": 0,
        "indexUid": None,
        "status": "enqueued",
        "type": "sendEmail",
        "canceledBy": None,
        "details": json.loads(GIVEN),
        "error": None,
        "duration": None,
        "enqueuedAt": at(1),
        "startedAt": None,
        "finishedAt": None,
    }
    assert list(response.json()["details"]) == ["to", "big", "zeta", "alpha"]
    assert response.json()["details"]["big"] == 123456789012345678901234567890


async def test_custom_metadata_is_kept_and_answered_after_meilisearch_fields(typed_http):
    response = await post(typed_http, '{"type": "indexCreation", "indexUid": "movies"}', "?customMetadata=batch%2042")
    assert response.status_code == 202
    response = await post(typed_http, '{"type": "indexCreation", "indexUid": "books"}')
    tasks = (await typed_http.get("/tasks?reverse=true")).json()["results"]
    assert list(tasks[0]) == [
        "uid",
        "indexUid",
        "status",
        "type",
        "canceledBy",
        "details",
        "error",
        "duration",
        "enqueuedAt",
        "startedAt",
        "finishedAt",
        "customMetadata",
    ]
    assert tasks[0]["customMetadata"] == "batch 42"
    assert "customMetadata" not in tasks[1]  # a task without one keeps Meilisearch's shape
    empty = await post(typed_http, '{"type": "sendEmail"}', "?customMetadata=")
    assert (await typed_http.get(f"/tasks/{empty.json()['taskUid']}")).json()["customMetadata"] == ""


async def test_unknown_types_list_the_registered_ones_on_enqueue_and_filters(typed_http):
    listing = f"{MEILISEARCH_TYPES}, `sendEmail`, `resizeImage`."
    response = await post(typed_http, '{"type": "sendSms", "details": {}}')
    assert (response.status_code, response.json()) == (
        400,
        error(
            "invalid_task_types",
            f"Invalid value in parameter `type`: `sendSms` is not a valid task type. Available types are {listing}",
        ),
    )
    response = await typed_http.get("/tasks?types=sendEmail,sendSms")
    assert (response.status_code, response.json()) == (
        400,
        error(
            "invalid_task_types",
            f"Invalid value in parameter `types[1]`: `sendSms` is not a valid task type. Available types are {listing}",
        ),
    )
    assert (await typed_http.get("/tasks")).json()["total"] == 0


async def test_a_server_without_registered_types_answers_meilisearch_s_message(http):
    response = await post(http, '{"type": "sendEmail"}')
    assert response.json() == error(
        "invalid_task_types",
        f"Invalid value in parameter `type`: `sendEmail` is not a valid task type. Available types are"
        f" {MEILISEARCH_TYPES}.",
    )
    response = await http.get("/tasks?types=sendEmail")
    assert response.json()["message"] == (
        f"Invalid value in parameter `types`: `sendEmail` is not a valid task type. Available types are"
        f" {MEILISEARCH_TYPES}."
    )


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ('{"type": "sendEmail", "details": [1]}', "invalid_task_details", "`details` must be an object or null."),
        ('{"type": "sendEmail", "details": "x"}', "invalid_task_details", "`details` must be an object or null."),
        (
            '{"type": "sendEmail", "indexUid": "no spaces"}',
            "invalid_index_uid",
            "`no spaces` is not a valid index uid. Index uid can be an integer or a string containing only"
            " alphanumeric characters, hyphens (-) and underscores (_), and can not be more than 400 bytes.",
        ),
        (
            '{"type": "documentAdditionOrUpdate", "indexUid": "a", "details": {"to": "x"}}',
            "invalid_task_details",
            "`details.to` is not a detail of a `documentAdditionOrUpdate` task; its details are"
            " `receivedDocuments`, `indexedDocuments`.",
        ),
    ],
)
async def test_bad_custom_tasks_are_refused_and_nothing_is_stored(typed_http, body, code, message):
    response = await post(typed_http, body)
    assert (response.status_code, response.json()) == (400, error(code, message))
    assert (await typed_http.get("/tasks")).json()["total"] == 0


async def test_details_over_the_payload_limit_are_refused(config, clock):
    limited = dataclasses.replace(config, task_types="sendEmail", http_payload_size_limit="4KiB")
    running = await app.start(limited, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(running.grpc_target) as chan:
            stub = task_service_pb2_grpc.TaskServiceStub(chan)
            big = json.dumps({"body": "x" * 5000})
            request = pb.EnqueueTaskRequest(type_name="sendEmail", details=T.TaskDetails(custom_json=big))
            code, reason, _ = await error_of(stub.EnqueueTask(request))
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large")
            request = pb.EnqueueTaskRequest(type_name="sendEmail", custom_metadata="m" * 5000)
            code, reason, _ = await error_of(stub.EnqueueTask(request))
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large")
            assert (await stub.ListTasks(pb.ListTasksRequest())).total == 0
    finally:
        await running.stop(0)


async def test_grpc_sets_type_name_for_every_task_and_leaves_type_unspecified_for_custom_ones(channel):
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    custom = await stub.EnqueueTask(
        pb.EnqueueTaskRequest(
            type_name="resizeImage", index_uid="photos", details=T.TaskDetails(custom_json='{"w":640,"h":480}')
        )
    )
    assert (custom.task.type, custom.task.type_name) == (T.TASK_TYPE_UNSPECIFIED, "resizeImage")
    meili = await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="photos"))
    assert (meili.task.type, meili.task.type_name) == (T.TASK_TYPE_INDEX_CREATION, "indexCreation")
    by_name = await stub.EnqueueTask(
        pb.EnqueueTaskRequest(type_name="indexDeletion", index_uid="photos", custom_metadata="cleanup")
    )
    assert by_name.task.type == T.TASK_TYPE_INDEX_DELETION
    task = (await stub.GetTask(pb.GetTaskRequest(uid=0))).task
    assert (task.type, task.type_name, task.details.WhichOneof("kind")) == (0, "resizeImage", "custom_json")
    assert task.details.custom_json == '{"w":640,"h":480}'
    assert not task.HasField("custom_metadata")
    assert (await stub.GetTask(pb.GetTaskRequest(uid=2))).task.custom_metadata == "cleanup"
    # Filters by name, Meilisearch's and registered alike.
    page = await stub.ListTasks(
        pb.ListTasksRequest(filter=T.TaskFilter(types=T.TypeSet(type_names=["resizeImage", "indexDeletion"])))
    )
    assert [t.uid for t in page.results] == [2, 0]
    # Details of another type's case, or custom details for one of Meilisearch's types, are refused.
    for request in (
        pb.EnqueueTaskRequest(type_name="sendEmail", details=T.TaskDetails(index_creation=T.IndexDetails())),
        pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="a", details=T.TaskDetails(custom_json="{}")),
        pb.EnqueueTaskRequest(type_name="sendEmail", details=T.TaskDetails(custom_json="[1]")),
        pb.EnqueueTaskRequest(type_name="sendEmail", details=T.TaskDetails(custom_json="{nope")),
    ):
        code, reason, _ = await error_of(stub.EnqueueTask(request))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_details")
    code, reason, message = await error_of(stub.EnqueueTask(pb.EnqueueTaskRequest(type_name="sendSms")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_types")
    assert message.endswith("`snapshotCreation`, `sendEmail`, `resizeImage`.")
    both = pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, type_name="sendEmail", index_uid="a")
    assert (await error_of(stub.EnqueueTask(both)))[1:] == (
        "invalid_task_types",
        "`type` `TASK_TYPE_INDEX_CREATION` and `type_name` `sendEmail` name two types; give one.",
    )
    assert (await stub.ListTasks(pb.ListTasksRequest())).total == 3


async def test_custom_tasks_of_one_index_batch_together_in_order_and_those_of_none_run_in_parallel(typed, channel):
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    workers = worker_service_pb2_grpc.WorkerServiceStub(channel)

    def resize(index: str | None) -> pb.EnqueueTaskRequest:
        request = pb.EnqueueTaskRequest(type_name="resizeImage", details=T.TaskDetails(custom_json='{"w":1}'))
        if index is not None:
            request.index_uid = index
        return request

    for index in ("a", "a", "b", "a"):  # uids 0..3
        await stub.EnqueueTask(resize(index))
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type_name="sendEmail"))  # 4
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type_name="sendEmail"))  # 5

    async def lease() -> list[int]:
        response = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", max_tasks=10))
        return [t.uid for t in response.tasks]

    # Index `a`'s three in one batch: per index, `b`'s task between them holds none of `a`'s back.
    assert await lease() == [0, 1, 3]
    assert await lease() == [2]
    # Tasks of no index: one a lease, both at once.
    assert await lease() == [4]
    assert await lease() == [5]
    assert await lease() == []  # index `a` still held: nothing else to run


async def test_a_worker_s_details_merge_into_a_custom_task_s(typed, channel):
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
    await stub.EnqueueTask(
        pb.EnqueueTaskRequest(type_name="sendEmail", details=T.TaskDetails(custom_json='{"to":"a@b","tries":0}'))
    )
    lease = await workers.LeaseTasks(
        wpb.LeaseTasksRequest(worker="w", types=T.TypeSet(type_names=["sendEmail"]), max_tasks=1)
    )
    assert [t.type_name for t in lease.tasks] == ["sendEmail"]
    outcome = wpb.TaskOutcome(uid=0, details=T.TaskDetails(custom_json='{"tries":1,"messageId":"m-1"}'))
    done = await workers.CompleteTasks(wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=[outcome]))
    assert json.loads(done.tasks[0].details.custom_json, object_pairs_hook=list) == [
        ("to", "a@b"),
        ("tries", 1),
        ("messageId", "m-1"),
    ]
    assert done.tasks[0].status == T.TASK_STATUS_SUCCEEDED


async def test_a_worker_cannot_report_meilisearch_details_for_a_custom_task(typed, channel):
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type_name="sendEmail"))
    lease = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", max_tasks=1))
    details = T.TaskDetails(document_addition_or_update=T.DocumentAdditionOrUpdateDetails(indexed_documents=1))
    code, reason, message = await error_of(
        workers.CompleteTasks(
            wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=[wpb.TaskOutcome(uid=0, details=details)])
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_outcome")
    assert message == "Task `0` is a `sendEmail` task; its details must be of that type."


async def test_cancel_delete_and_watch_take_custom_types(typed, typed_http):
    await post(typed_http, '{"type": "sendEmail"}')
    await post(typed_http, '{"type": "resizeImage", "indexUid": "p"}')
    response = await typed_http.post("/tasks/cancel?types=sendEmail")
    assert response.status_code == 200 or response.status_code == 202
    await typed.scheduler.tick()
    tasks = {t["uid"]: t for t in (await typed_http.get("/tasks")).json()["results"]}
    assert tasks[0]["status"] == "canceled" and tasks[1]["status"] == "enqueued"
    assert tasks[2]["details"]["originalFilter"] == "?types=sendEmail"
    response = await typed_http.delete("/tasks?types=sendEmail,taskCancelation")
    await typed.scheduler.tick()
    assert [t["uid"] for t in (await typed_http.get("/tasks")).json()["results"]] == [
        response.json()["taskUid"],
        1,
    ]


async def test_codes_hold_across_restarts_and_new_registrations(config, clock):
    first = await app.start(dataclasses.replace(config, task_types="sendEmail"), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(first.grpc_target) as chan:
            await task_service_pb2_grpc.TaskServiceStub(chan).EnqueueTask(pb.EnqueueTaskRequest(type_name="sendEmail"))
    finally:
        await first.stop(0)
    # Registered in another order, with a new one first: sendEmail keeps its code, its task its type.
    again = dataclasses.replace(config, task_types="resizeImage,sendEmail")
    second = await app.start(again, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(second.grpc_target) as chan:
            stub = task_service_pb2_grpc.TaskServiceStub(chan)
            await stub.EnqueueTask(pb.EnqueueTaskRequest(type_name="resizeImage"))
            page = await stub.ListTasks(
                pb.ListTasksRequest(filter=T.TaskFilter(types=T.TypeSet(type_names=["sendEmail"])))
            )
            assert [(t.uid, t.type_name) for t in page.results] == [(0, "sendEmail")]
    finally:
        await second.stop(0)
    # Left out of the registration, its tasks still read (and filter) by name; it can no longer be enqueued.
    third = await app.start(dataclasses.replace(config, task_types=""), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(third.grpc_target) as chan:
            stub = task_service_pb2_grpc.TaskServiceStub(chan)
            page = await stub.ListTasks(
                pb.ListTasksRequest(filter=T.TaskFilter(types=T.TypeSet(type_names=["sendEmail", "resizeImage"])))
            )
            assert [(t.uid, t.type_name) for t in page.results] == [(1, "resizeImage"), (0, "sendEmail")]
            code, reason, _ = await error_of(stub.EnqueueTask(pb.EnqueueTaskRequest(type_name="sendEmail")))
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_types")
    finally:
        await third.stop(0)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("documentAdditionOrUpdate", "task type `documentAdditionOrUpdate` is Meilisearch's"),
        ("IndexCreation", "task type `IndexCreation` is not a valid name"),
        ("send-email", "task type `send-email` is not a valid name"),
        ("a" + "b" * 64, "is not a valid name"),
        ("sendEmail,sendemail", "task types `sendEmail` and `sendemail` differ only in case"),
    ],
)
async def test_bad_names_refuse_the_start_with_a_clear_message(config, names, message):
    with pytest.raises(ValueError, match="--task-types") as raised:
        await app.start(dataclasses.replace(config, task_types=names), background=False)
    assert message in str(raised.value)


async def test_the_python_client_enqueues_lists_and_reads_custom_types(typed):
    from taskhub.client import AsyncTaskHubClient, TaskType

    async with AsyncTaskHubClient(typed.grpc_target) as client:
        summary = await client.enqueue(
            "sendEmail", None, {"to": "a@b", "n": 2**60 + 1}, custom_metadata="from the client"
        )
        assert (summary.type, summary.to_dict()["type"]) == ("sendEmail", "sendEmail")
        await client.enqueue(TaskType.INDEX_CREATION, "movies")
        await client.enqueue_tasks([("resizeImage", "photos", {"w": 1}, "batch"), ("sendEmail",)])
        page = await client.list_tasks(types=["sendEmail", "resizeImage"])
        assert [(t.uid, t.type) for t in page.results] == [(3, "sendEmail"), (2, "resizeImage"), (0, "sendEmail")]
        task = await client.get_task(0)
        assert task.details == {"to": "a@b", "n": 2**60 + 1}
        assert task.to_dict()["customMetadata"] == "from the client"
        assert list(task.to_dict())[-1] == "customMetadata"
        assert "customMetadata" not in (await client.get_task(1)).to_dict()
        assert (await client.get_task(2)).custom_metadata == "batch"
        with pytest.raises(TaskHubError, match="`sendSms` is not a valid task type"):
            await client.enqueue("sendSms")


async def test_sse_and_grpc_watches_follow_custom_types_by_name(typed, channel):
    from taskhub.gateway.serving import GatewayServer
    from test_gateway_events import open_stream

    gateway = await GatewayServer.start(typed.grpc_target, "127.0.0.1:0", grace=1, heartbeat=30)
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    watch = stub.WatchTasks(pb.WatchTasksRequest(filter=T.TaskFilter(types=T.TypeSet(type_names=["sendEmail"]))))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http:
            response, stream = await open_stream(http, "/tasks/events?types=sendemail")
            assert await stream.frame() == {"id": "0"}
            await post(http, '{"type": "resizeImage"}')  # 1: not matched
            await post(http, '{"type": "sendEmail", "details": {"to": "a@b"}}', "?customMetadata=x")  # 2
            event = await stream.frame()
            assert (event["id"], event["data"]["type"], event["data"]["customMetadata"]) == ("2", "sendEmail", "x")
            assert event["data"] == (await http.get("/tasks/1")).json()
            await response.aclose()
        seen = await asyncio.wait_for(anext(aiter(watch)), 5)
        assert (seen.sequence, seen.task.type_name, seen.task.details.custom_json) == (2, "sendEmail", '{"to":"a@b"}')
    finally:
        watch.cancel()
        await gateway.stop()


async def test_a_dump_carries_custom_types_by_name_into_another_database(typed, typed_http, config, clock, tmp_path):
    await post(typed_http, '{"type": "resizeImage", "indexUid": "p", "details": {"w": 1, "big": 18446744073709551617}}')
    response = await typed_http.post("/dumps")
    assert response.status_code == 202
    await typed.scheduler.tick()
    dumped = (await typed_http.get("/tasks/1")).json()
    assert dumped["status"] == "succeeded", dumped
    [path] = (tmp_path / "dumps").iterdir()
    # Another database, where `sendEmail` takes the first code: the dump's `resizeImage` still reads as itself.
    other = dataclasses.replace(
        config, db=str(tmp_path / "other" / "t.db"), task_types="sendEmail", import_dump=str(path)
    )
    running = await app.start(other, background=False, clock=clock)
    try:
        async with gateway_client(running.grpc_target) as http:
            task = (await http.get("/tasks/0")).json()
            assert (task["type"], task["details"]) == ("resizeImage", {"w": 1, "big": 18446744073709551617})
            assert (await http.get("/tasks?types=resizeImage")).json()["total"] == 1
            assert (await post(http, '{"type": "sendEmail"}')).status_code == 202
    finally:
        await running.stop(0)


async def test_custom_types_need_tasks_enqueue_and_a_scoped_key_its_index(config, clock):
    from conftest import MASTER_KEY

    secured = dataclasses.replace(config, task_types="sendEmail", master_key=MASTER_KEY)
    running = await app.start(secured, background=False, clock=clock)
    try:
        async with gateway_client(running.grpc_target) as http:
            master = {"authorization": f"Bearer {MASTER_KEY}"}

            async def key(actions: list[str], indexes: list[str]) -> dict:
                body = {"actions": actions, "indexes": indexes, "expiresAt": None}
                created = await http.post("/keys", json=body, headers=master)
                return {"authorization": f"Bearer {created.json()['key']}", "content-type": "application/json"}

            dumper, scoped = await key(["dumps.create"], ["*"]), await key(["tasks.enqueue"], ["mail*"])
            body = '{"type": "sendEmail", "indexUid": "mail-eu"}'
            refused = await http.post("/tasks", content=body, headers=dumper)
            assert (refused.status_code, refused.json()["code"]) == (403, "invalid_api_key")
            assert (await http.post("/tasks", content=body, headers=scoped)).status_code == 202
            # A scoped key sees no task of no index, so it enqueues none either, nor one of another index.
            for other in ('{"type": "sendEmail"}', '{"type": "sendEmail", "indexUid": "news"}'):
                refused = await http.post("/tasks", content=other, headers=scoped)
                assert (refused.status_code, refused.json()["code"]) == (403, "invalid_api_key")
            assert (await http.get("/tasks", headers=master)).json()["total"] == 1
    finally:
        await running.stop(0)
