"""A full queue (configured limit and a real SQLITE_FULL) and the automatic cleanup of old tasks."""

from __future__ import annotations

import dataclasses
import sqlite3

import grpc
import pytest

from helpers import T, enqueue, error_of, finish, start
from taskhub.errors import TaskHubError
from taskhub.server import app
from taskhub.server.index.memory import MemoryFinder
from taskhub.server.model import TaskQuery, TaskType, format_time
from taskhub.server.rules.scheduler import Scheduler
from taskhub.server.storage.sqlite.database import SqliteStorage as Store
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc

FULL = (
    "taskhub cannot receive write operations because the limit of the task database has been reached."
    " Please delete tasks to continue performing write operations."
)


async def test_automatic_cleanup_deletes_the_oldest_finished_tasks(config, clock):
    service = await app.start(
        dataclasses.replace(config, cleanup_threshold=10, cleanup_batch=4), background=False, clock=clock
    )
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            # An index each, so a worker can take any of them while the others stay enqueued.
            for uid in range(10):
                await enqueue(stub, f"index{uid}")
            for uid in (1, 2, 4, 5, 7, 8):
                await start(service, uid)
                await finish(service, uid)
            bound = format_time((await service.scheduler.get_task(5)).enqueued_at + 1).replace(":", "%3A")
            assert await service.scheduler.tick() == 1
            page = await stub.ListTasks(
                pb.ListTasksRequest(
                    filter=task_pb2.TaskFilter(types=task_pb2.TypeSet(types=[T.TASK_TYPE_TASK_DELETION]))
                )
            )
            (deletion,) = page.results
            details = deletion.details.task_deletion
            assert (deletion.uid, deletion.status, details.matched_tasks, details.deleted_tasks) == (
                10,
                T.TASK_STATUS_SUCCEEDED,
                4,
                4,
            )
            # The bound is just after the newest deleted task (5), so the filter names exactly the deleted ones.
            assert details.original_filter == f"?beforeEnqueuedAt={bound}&statuses=succeeded%2Cfailed%2Ccanceled"
            remaining = [t.uid for t in (await stub.ListTasks(pb.ListTasksRequest(reverse=True))).results]
            assert remaining == [0, 3, 6, 7, 8, 9, 10]
            # Below the threshold again: no further cleanup.
            assert await service.scheduler.tick() == 0
    finally:
        await service.stop(0)


async def test_a_full_queue_refuses_tasks_but_cancel_and_delete_work(config, clock):
    probe = app.open_store(config)  # whichever database the config names
    empty = probe.used_bytes()
    probe.close()
    service = await app.start(
        dataclasses.replace(config, max_task_db_size=str(empty + 64 * 1024), watch_retention=5),
        background=False,
        clock=clock,
    )
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            stored = 0
            for _ in range(5_000):
                try:
                    await enqueue(stub, received_documents=1)
                    stored += 1
                except grpc.aio.AioRpcError:
                    break
            assert 10 < stored < 5_000
            assert await error_of(enqueue(stub)) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "no_space_left_on_device",
                FULL,
            )
            everything = task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[T.TASK_STATUS_ENQUEUED]))
            await stub.CancelTasks(pb.CancelTasksRequest(filter=everything))
            await service.scheduler.tick()
            await stub.DeleteTasks(
                pb.DeleteTasksRequest(
                    filter=task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[T.TASK_STATUS_CANCELED]))
                )
            )
            await service.scheduler.tick()
            assert (await stub.ListTasks(pb.ListTasksRequest())).total == 2  # the cancelation and the deletion
            # Freed pages are reused, and the enqueue first prunes the change log to its retention: accepted.
            assert await enqueue(stub) == stored + 2
    finally:
        await service.stop(0)


async def test_sqlite_full_is_no_space_left_and_corrupts_nothing(tmp_path):
    path = tmp_path / "capped.db"
    probe = Store(path)
    empty = probe.used_bytes()
    probe.close()
    store = Store(path, max_bytes=empty + 48 * 1024)
    scheduler = Scheduler(store, MemoryFinder(), snapshots_dir=str(tmp_path), dumps_dir=str(tmp_path))
    await scheduler.start(background=False)
    stored = []
    with pytest.raises(TaskHubError) as full:
        for _ in range(10_000):
            stored.append(
                (await scheduler.enqueue(TaskType.DOCUMENT_ADDITION_OR_UPDATE, "movies", {"receivedDocuments": 1})).uid
            )
    assert (full.value.code, full.value.message) == ("no_space_left_on_device", FULL)
    assert stored == list(range(len(stored))) and len(stored) > 10
    # Nothing half-written: every acknowledged task is whole, the next uid was not spent.
    page = await scheduler.list_tasks(TaskQuery(), limit=10_000)
    assert [t.uid for t in page.results] == stored[::-1] and page.total == len(stored)
    await scheduler.stop()
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reopened = Store(path)
    assert reopened.tasks.next_uid() == len(stored)
    reopened.close()
