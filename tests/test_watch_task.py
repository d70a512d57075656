"""WatchTask: current state at once, every committed change, end after a terminal status, no leaks."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from helpers import T, enqueue, error_of, finish, start
from taskhub.v1 import task_pb2, task_service_pb2 as pb


async def next_state(stream) -> task_pb2.Task:
    return (await asyncio.wait_for(stream.read(), timeout=5)).task


async def test_watch_sends_each_transition_then_ends(service, stub):
    uid = await enqueue(stub)
    stream = stub.WatchTask(pb.WatchTaskRequest(uid=uid))
    assert (await next_state(stream)).status == T.TASK_STATUS_ENQUEUED
    await start(service, uid)
    processing = await next_state(stream)
    assert processing.status == T.TASK_STATUS_PROCESSING and processing.HasField("started_at")
    await finish(service, uid, details={"indexedDocuments": 9})
    done = await next_state(stream)
    assert done.status == T.TASK_STATUS_SUCCEEDED
    assert done.details.document_addition_or_update.indexed_documents == 9
    assert await stream.read() == grpc.aio.EOF
    assert await stream.code() == grpc.StatusCode.OK
    assert service.scheduler.hub.watchers == 0


async def test_watch_of_a_finished_task_sends_it_once(service, stub):
    await enqueue(stub)
    await stub.CancelTasks(pb.CancelTasksRequest(filter=task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=[0]))))
    await service.scheduler.tick()
    states = [r.task async for r in stub.WatchTask(pb.WatchTaskRequest(uid=0))]
    assert [(t.status, t.canceled_by) for t in states] == [(T.TASK_STATUS_CANCELED, 1)]


async def test_cancelation_ends_the_watch(service, stub):
    await enqueue(stub)
    stream = stub.WatchTask(pb.WatchTaskRequest(uid=0))
    await next_state(stream)
    await stub.CancelTasks(pb.CancelTasksRequest(filter=task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=[0]))))
    await service.scheduler.tick()
    assert (await next_state(stream)).status == T.TASK_STATUS_CANCELED
    assert await stream.read() == grpc.aio.EOF


async def test_watch_of_an_unknown_task_is_not_found(stub):
    assert await error_of(stub.WatchTask(pb.WatchTaskRequest(uid=42)).read()) == (
        grpc.StatusCode.NOT_FOUND,
        "task_not_found",
        "Task `42` not found.",
    )


async def test_a_client_that_goes_away_leaves_no_watcher(service, stub):
    uids = [await enqueue(stub) for _ in range(20)]
    streams = [stub.WatchTask(pb.WatchTaskRequest(uid=uid)) for uid in uids]
    for stream in streams:
        await next_state(stream)
    assert service.scheduler.hub.watchers == 20
    for stream in streams:
        stream.cancel()
    for _ in range(100):
        if service.scheduler.hub.watchers == 0:
            break
        await asyncio.sleep(0.02)
    assert service.scheduler.hub.watchers == 0
    # The server keeps working for the next watcher.
    await start(service, uids[0])
    stream = stub.WatchTask(pb.WatchTaskRequest(uid=uids[0]))
    assert (await next_state(stream)).status == T.TASK_STATUS_PROCESSING
    stream.cancel()


async def test_nothing_is_sent_before_it_is_committed(service, stub, monkeypatch):
    """A change whose transaction rolls back never reaches a watcher."""
    uid = await enqueue(stub)
    stream = stub.WatchTask(pb.WatchTaskRequest(uid=uid))
    await next_state(stream)

    # A worker's lease whose transaction fails after its rows are written: the store's row writer
    # saves the task as processing, then fails, once, so the whole lease rolls back.
    save = service.store.tasks.save

    def save_then_fail(*args, **kwargs):
        save(*args, **kwargs)
        monkeypatch.undo()
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service.store.tasks, "save", save_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        await service.scheduler.lease(worker="tests")
    assert (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task.status == T.TASK_STATUS_ENQUEUED
    await start(service, uid)
    # The first state sent is the real lease's (the failed one read the clock earlier, so its start differs).
    sent, stored = await next_state(stream), (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task
    assert sent.status == stored.status == T.TASK_STATUS_PROCESSING
    assert sent.started_at == stored.started_at
    stream.cancel()
