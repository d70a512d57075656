"""TaskService over a real gRPC server and a real SQLite file: enqueue, get, errors, health, reflection."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from helpers import T, details_for, enqueue, error_of
from taskhub.v1 import task_service_pb2 as pb


async def test_enqueue_answers_a_summary_and_get_returns_the_task(stub):
    response = await stub.EnqueueTask(
        pb.EnqueueTaskRequest(
            type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
            index_uid="movies",
            details=details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, received_documents=67493),
        )
    )
    summary = response.task
    assert (summary.task_uid, summary.index_uid, summary.status, summary.type) == (
        0,
        "movies",
        T.TASK_STATUS_ENQUEUED,
        T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
    )
    task = (await stub.GetTask(pb.GetTaskRequest(uid=0))).task
    assert task.uid == 0 and task.index_uid == "movies" and task.status == T.TASK_STATUS_ENQUEUED
    assert task.details.document_addition_or_update.received_documents == 67493
    assert not task.details.document_addition_or_update.HasField("indexed_documents")
    assert task.enqueued_at == summary.enqueued_at
    assert not task.HasField("started_at") and not task.HasField("finished_at")
    assert not task.HasField("duration") and not task.HasField("error") and not task.HasField("canceled_by")


async def test_uids_are_sequential_from_zero(stub):
    assert [await enqueue(stub) for _ in range(5)] == [0, 1, 2, 3, 4]


async def test_missing_task_is_not_found(stub):
    code, reason, message = await error_of(stub.GetTask(pb.GetTaskRequest(uid=9)))
    assert (code, reason, message) == (grpc.StatusCode.NOT_FOUND, "task_not_found", "Task `9` not found.")


async def test_global_task_takes_no_index(stub):
    code, reason, _ = await error_of(
        stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION, index_uid="movies"))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_index_uid")
    summary = (await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION))).task
    assert not summary.HasField("index_uid")


async def test_bad_enqueues_are_refused_and_store_nothing(stub):
    bad = [
        (pb.EnqueueTaskRequest(type=T.TASK_TYPE_UNSPECIFIED, index_uid="a"), "invalid_task_types"),
        (pb.EnqueueTaskRequest(type=42, index_uid="a"), "invalid_task_types"),
        (pb.EnqueueTaskRequest(type=T.TASK_TYPE_TASK_CANCELATION), "invalid_task_type"),
        (pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION), "invalid_index_uid"),
        (pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="the good doggo"), "invalid_index_uid"),
        (pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="a" * 401), "invalid_index_uid"),
        (pb.EnqueueTaskRequest(type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="a"), "invalid_task_details"),
        (
            pb.EnqueueTaskRequest(
                type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
                index_uid="a",
                details=details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, received_documents=1, indexed_documents=1),
            ),
            "invalid_task_details",
        ),
        (
            pb.EnqueueTaskRequest(
                type=T.TASK_TYPE_INDEX_CREATION,
                index_uid="a",
                details=details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, received_documents=1),
            ),
            "invalid_task_details",
        ),
        (pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_SWAP), "invalid_task_details"),
    ]
    for request, expected in bad:
        code, reason, _ = await error_of(stub.EnqueueTask(request))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, expected), request
    assert await enqueue(stub) == 0  # nothing was stored, no uid was spent


def _creation(index_uid: str) -> pb.EnqueueTaskRequest:
    return pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid=index_uid)


async def test_enqueue_tasks_answers_summaries_in_order_with_consecutive_uids(stub):
    await enqueue(stub)
    response = await stub.EnqueueTasks(
        pb.EnqueueTasksRequest(
            tasks=[
                _creation("books"),
                pb.EnqueueTaskRequest(
                    type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
                    index_uid="movies",
                    details=details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, received_documents=7),
                ),
                pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION),
            ]
        )
    )
    assert [(t.task_uid, t.index_uid, t.type) for t in response.tasks] == [
        (1, "books", T.TASK_TYPE_INDEX_CREATION),
        (2, "movies", T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE),
        (3, "", T.TASK_TYPE_DUMP_CREATION),
    ]
    assert not response.tasks[2].HasField("index_uid")
    task = (await stub.GetTask(pb.GetTaskRequest(uid=2))).task
    assert task.details.document_addition_or_update.received_documents == 7


async def test_a_batch_is_one_transaction_among_concurrent_enqueues(stub, service):
    # Single enqueues race the batch; whatever group commit they share, the batch's uids stay consecutive.
    singles = [enqueue(stub) for _ in range(30)]
    batch = stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[_creation(f"i{n}") for n in range(200)]))
    results = await asyncio.gather(*singles[:15], batch, *singles[15:])
    uids = [t.task_uid for t in results[15].tasks]
    assert uids == list(range(uids[0], uids[0] + 200))
    assert sorted(uids + results[:15] + results[16:]) == list(range(230))
    changes = service.store.log.changes_after(0, 1000).tasks
    seqs = {t.uid: t.seq for t in changes}
    assert [seqs[u] for u in uids] == list(range(seqs[uids[0]], seqs[uids[0]] + 200))


async def test_enqueue_tasks_refuses_them_all_when_one_is_bad(stub):
    cases = [
        ([_creation("a"), _creation("the good doggo"), _creation("b")], "invalid_index_uid", "`tasks[1]`: "),
        (
            [_creation("a"), _creation("b"), pb.EnqueueTaskRequest(type=42, index_uid="c")],
            "invalid_task_types",
            "`tasks[2]`: ",
        ),
        (
            [pb.EnqueueTaskRequest(type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="a")],
            "invalid_task_details",
            "`tasks[0]`: `receivedDocuments` is required",
        ),
        ([], "invalid_task_batch", "Give from 1 to 1,000 tasks to enqueue at once, not 0."),
        ([_creation("a")] * 1001, "invalid_task_batch", "Give from 1 to 1,000 tasks to enqueue at once, not 1,001."),
    ]
    for tasks, reason, message in cases:
        code, got_reason, got_message = await error_of(stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=tasks)))
        assert (code, got_reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason), (reason, got_message)
        assert got_message.startswith(message), got_message
    assert (await stub.ListTasks(pb.ListTasksRequest())).total == 0
    full = await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[_creation("a")] * 1000))
    assert [t.task_uid for t in full.tasks] == list(range(1000))


async def test_index_swap_and_settings_details_round_trip(stub):
    request = pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_SWAP)
    request.details.index_swap.swaps.add(indexes=["a", "b"])
    uid = (await stub.EnqueueTask(request)).task.task_uid
    task = (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task
    assert [list(s.indexes) for s in task.details.index_swap.swaps] == [["a", "b"]]

    request = pb.EnqueueTaskRequest(type=T.TASK_TYPE_SETTINGS_UPDATE, index_uid="movies")
    request.details.settings_update.settings.update(
        {"rankingRules": ["typo", "words"], "pagination": {"maxTotalHits": 5}}
    )
    uid = (await stub.EnqueueTask(request)).task.task_uid
    task = (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task
    settings = task.details.settings_update.settings
    assert list(settings["rankingRules"]) == ["typo", "words"]
    assert settings["pagination"]["maxTotalHits"] == 5


async def test_health_and_reflection_are_served(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service_name in ("", "taskhub.v1.TaskService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service_name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
        assert {"taskhub.v1.TaskService", "grpc.health.v1.Health"} <= names
        break


async def test_settings_that_are_not_json_are_refused(stub):
    request = pb.EnqueueTaskRequest(type=T.TASK_TYPE_SETTINGS_UPDATE, index_uid="movies")
    request.details.settings_update.settings.update({"pagination": {"maxTotalHits": float("nan")}})
    code, reason, _ = await error_of(stub.EnqueueTask(request))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_details")


async def test_an_unexpected_failure_is_internal_without_its_detail(stub, service, caplog):
    await enqueue(stub)
    service.scheduler.reader.conn.close()  # a real fault: GetTask's connection is gone
    code, reason, message = await error_of(stub.GetTask(pb.GetTaskRequest(uid=0)))
    assert (code, reason, message) == (grpc.StatusCode.INTERNAL, "internal", "internal error")
    # Logged for the operator, with its traceback (SQLite and PostgreSQL say it their own way).
    assert "closed database" in caplog.text or "connection is closed" in caplog.text
    assert "Traceback" in caplog.text
