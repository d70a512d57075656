"""The Python worker helper against a real in-process server: handlers, failures, cancelation, stopping."""

from __future__ import annotations

import asyncio
import threading

import pytest

from helpers import T, enqueue
from taskhub.client.worker import TaskFailed, Worker
from taskhub.v1 import task_pb2, task_service_pb2 as pb


def worker(service, handlers, **options) -> Worker:
    options = {"poll_seconds": 0.2, "lease_seconds": 0.6, **options}
    return Worker(service.grpc_target, handlers, **options)


async def get(stub, uid):
    return (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task


async def until(predicate, timeout: float = 10):
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_handlers_run_and_their_details_are_reported(service, stub):
    await enqueue(stub, "movies", received_documents=5)
    await enqueue(stub, "movies", T.TASK_TYPE_SETTINGS_UPDATE)
    seen = []

    def documents(job):
        seen.append((job.uid, job.index_uid, job.details))
        return {"indexedDocuments": job.details["receivedDocuments"]}

    async def settings(job):
        seen.append((job.uid, job.index_uid, job.task.type))

    await worker(service, {"documentAdditionOrUpdate": documents, "settingsUpdate": settings}).run_async(max_batches=2)
    assert seen == [(0, "movies", {"receivedDocuments": 5, "indexedDocuments": None}), (1, "movies", "settingsUpdate")]
    first, second = await get(stub, 0), await get(stub, 1)
    assert (first.status, first.details.document_addition_or_update.indexed_documents) == (T.TASK_STATUS_SUCCEEDED, 5)
    assert second.status == T.TASK_STATUS_SUCCEEDED


async def test_failures_become_task_errors(service, stub):
    await enqueue(stub, "a")
    await enqueue(stub, "b")

    def documents(job):
        if job.index_uid == "a":
            raise TaskFailed("Document 7 has no `id`.", code="missing_document_id")
        raise ValueError("boom")

    await worker(service, {"documentAdditionOrUpdate": documents}).run_async(max_batches=2)
    a, b = await get(stub, 0), await get(stub, 1)
    assert (a.status, a.error.code, a.error.type, a.error.message) == (
        T.TASK_STATUS_FAILED,
        "missing_document_id",
        "invalid_request",
        "Document 7 has no `id`.",
    )
    assert (b.status, b.error.code, b.error.type, b.error.message) == (
        T.TASK_STATUS_FAILED,
        "internal",
        "internal",
        "ValueError: boom",
    )
    assert b.details.document_addition_or_update.indexed_documents == 0


async def test_a_cancelation_reaches_the_running_handler(service, stub):
    for _ in range(3):
        await enqueue(stub)
    running, told = threading.Event(), threading.Event()

    def documents(job):
        running.set()
        if job.canceled.wait(10):
            told.set()
        return {"indexedDocuments": 1}

    w = worker(service, {"documentAdditionOrUpdate": documents})
    runner = asyncio.ensure_future(w.run_async(max_batches=1))
    await until(lambda: asyncio.to_thread(running.is_set))
    await stub.CancelTasks(pb.CancelTasksRequest(filter=task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=[1]))))
    await service.scheduler.tick()
    await asyncio.wait_for(runner, 10)
    # The handler's thread is told; the worker does not wait for it to return.
    assert await asyncio.to_thread(told.wait, 5) and w.processed == 0
    assert [(await get(stub, u)).status for u in range(3)] == [
        T.TASK_STATUS_ENQUEUED,
        T.TASK_STATUS_CANCELED,
        T.TASK_STATUS_ENQUEUED,
    ]
    # The rest of the batch runs in a new one.
    await worker(service, {"documentAdditionOrUpdate": lambda job: None}).run_async(max_batches=1)
    assert [(await get(stub, u)).status for u in (0, 2)] == [T.TASK_STATUS_SUCCEEDED] * 2


async def test_watch_shows_each_transition_a_worker_makes(service, stub):
    uid = await enqueue(stub)
    stream = stub.WatchTask(pb.WatchTaskRequest(uid=uid))
    await worker(service, {"documentAdditionOrUpdate": lambda job: {"indexedDocuments": 10}}).run_async(max_batches=1)
    assert [r.task.status async for r in stream] == [
        T.TASK_STATUS_ENQUEUED,
        T.TASK_STATUS_PROCESSING,
        T.TASK_STATUS_SUCCEEDED,
    ]


@pytest.mark.parametrize("grace, expected", [(5.0, T.TASK_STATUS_SUCCEEDED), (0.05, T.TASK_STATUS_ENQUEUED)])
async def test_stopping_finishes_the_batch_within_grace_or_releases_it(service, stub, grace, expected):
    await enqueue(stub)
    running = threading.Event()

    def slow(job):
        running.set()
        job.canceled.wait(0.5)
        return None

    w = worker(service, {"documentAdditionOrUpdate": slow}, grace_seconds=grace)
    runner = asyncio.ensure_future(w.run_async())
    await until(lambda: asyncio.to_thread(running.is_set))
    w.stop()
    await asyncio.wait_for(runner, 10)
    assert (await get(stub, 0)).status == expected


async def test_a_worker_leases_only_its_types(service, stub):
    await enqueue(stub, "a", T.TASK_TYPE_INDEX_CREATION)
    await enqueue(stub, "b")
    await worker(service, {"documentAdditionOrUpdate": lambda job: None}).run_async(max_batches=1)
    assert [(await get(stub, u)).status for u in (0, 1)] == [T.TASK_STATUS_ENQUEUED, T.TASK_STATUS_SUCCEEDED]
