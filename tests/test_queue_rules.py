"""Queue rules run by the server: cancelation, deletion, priority, restart recovery, snapshots and dumps."""

from __future__ import annotations

import json

import grpc
import pytest

from helpers import T, enqueue, error_of, finish, restored_config, start
from taskhub.errors import TaskHubError
from taskhub.server import app
from taskhub.server.model import TaskQuery, TaskStatus, TaskType
from taskhub.v1 import task_pb2, task_service_pb2 as pb


def uid_filter(*uids: int) -> task_pb2.TaskFilter:
    return task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=uids))


async def get(stub, uid: int) -> task_pb2.Task:
    return (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task


async def test_cancelation_cancels_unfinished_matches_and_leaves_finished_ones(service, stub):
    # Each running task holds its index, so 1 and 2 run at once in indexes of their own, 0 staying enqueued.
    for index_uid in ("movies", "books", "songs", "movies"):
        await enqueue(stub, index_uid)
    await start(service, 1)
    await start(service, 2)
    await finish(service, 2, details={"indexedDocuments": 10})
    cancel = (await stub.CancelTasks(pb.CancelTasksRequest(filter=uid_filter(0, 1, 2, 3, 4, 5)))).task
    assert (cancel.task_uid, cancel.status, cancel.type, cancel.HasField("index_uid")) == (
        4,
        T.TASK_STATUS_ENQUEUED,
        T.TASK_TYPE_TASK_CANCELATION,
        False,
    )
    newer = await enqueue(stub)  # 5: enqueued after the cancelation, never matched by it
    details = (await get(stub, 4)).details.task_cancelation
    assert (details.matched_tasks, details.HasField("canceled_tasks")) == (4, False)
    assert details.original_filter == "?uids=0%2C1%2C2%2C3%2C4%2C5"

    assert await service.scheduler.tick() == 1
    done = await get(stub, 4)
    assert done.status == T.TASK_STATUS_SUCCEEDED
    assert (done.details.task_cancelation.matched_tasks, done.details.task_cancelation.canceled_tasks) == (4, 3)
    for uid in (0, 1, 3):
        task = await get(stub, uid)
        assert (task.status, task.canceled_by) == (T.TASK_STATUS_CANCELED, 4)
        assert task.finished_at == done.finished_at
        assert task.details.document_addition_or_update.indexed_documents == 0
    assert (await get(stub, 1)).HasField("duration")  # it had started
    assert not (await get(stub, 0)).HasField("started_at")  # canceled while enqueued
    assert (await get(stub, 2)).status == T.TASK_STATUS_SUCCEEDED
    assert (await get(stub, newer)).status == T.TASK_STATUS_ENQUEUED


async def test_original_filter_is_kept_as_given(service, stub):
    await enqueue(stub)
    given = "?statuses=enqueued%2Cprocessing"
    request = pb.CancelTasksRequest(
        filter=task_pb2.TaskFilter(
            statuses=task_pb2.StatusSet(statuses=[T.TASK_STATUS_ENQUEUED, T.TASK_STATUS_PROCESSING])
        ),
        original_filter=given,
    )
    uid = (await stub.CancelTasks(request)).task.task_uid
    assert (await get(stub, uid)).details.task_cancelation.original_filter == given


async def test_cancelations_run_newest_first(service, stub):
    await enqueue(stub)
    first = (await stub.CancelTasks(pb.CancelTasksRequest(filter=uid_filter(0)))).task.task_uid
    second = (await stub.CancelTasks(pb.CancelTasksRequest(filter=uid_filter(0, first)))).task.task_uid
    await service.scheduler.tick()
    # The newer cancelation ran first: it canceled task 0 and the older, still enqueued, cancelation.
    assert (await get(stub, 0)).canceled_by == second
    older = await get(stub, first)
    assert (older.status, older.canceled_by) == (T.TASK_STATUS_CANCELED, second)
    assert older.details.task_cancelation.canceled_tasks == 0


async def test_deletion_removes_only_finished_matches(service, stub):
    for _ in range(3):
        await enqueue(stub)
    await start(service, 0)
    await finish(service, 0, details={"indexedDocuments": 10})
    await start(service, 1)
    deletion = (
        await stub.DeleteTasks(
            pb.DeleteTasksRequest(filter=task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["movies"])))
        )
    ).task
    assert deletion.type == T.TASK_TYPE_TASK_DELETION
    await service.scheduler.tick()
    code, reason, message = await error_of(stub.GetTask(pb.GetTaskRequest(uid=0)))
    assert (code, reason, message) == (grpc.StatusCode.NOT_FOUND, "task_not_found", "Task `0` not found.")
    assert (await get(stub, 1)).status == T.TASK_STATUS_PROCESSING
    assert (await get(stub, 2)).status == T.TASK_STATUS_ENQUEUED
    details = (await get(stub, deletion.task_uid)).details.task_deletion
    assert (details.matched_tasks, details.deleted_tasks, details.original_filter) == (3, 1, "?indexUids=movies")


async def test_cancel_and_delete_need_a_filter(stub):
    for call, verb in (
        (stub.CancelTasks(pb.CancelTasksRequest()), "cancel"),
        (stub.DeleteTasks(pb.DeleteTasksRequest()), "delete"),
    ):
        assert await error_of(call) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "missing_task_filters",
            f"Query parameters to filter the tasks to {verb} are missing. Available query parameters are: `uids`,"
            " `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`,"
            " `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
        )
    # Every status is still a filter (Meilisearch's `statuses=*`-style "match all" needs it spelled out).
    everything = task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=list(range(1, 6))))
    assert (await stub.DeleteTasks(pb.DeleteTasksRequest(filter=everything))).task.task_uid == 0


async def test_server_tasks_run_in_priority_order(service, stub, tmp_path):
    await enqueue(stub)  # 0: a worker task; the server leaves it alone
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION))  # 1
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_SNAPSHOT_CREATION))  # 2
    await stub.DeleteTasks(pb.DeleteTasksRequest(filter=uid_filter(99)))  # 3
    await stub.CancelTasks(pb.CancelTasksRequest(filter=uid_filter(98)))  # 4
    await stub.CancelTasks(pb.CancelTasksRequest(filter=uid_filter(97)))  # 5
    assert await service.scheduler.tick() == 5
    tasks = [await get(stub, uid) for uid in range(6)]
    order = sorted(range(1, 6), key=lambda uid: (tasks[uid].started_at.seconds, tasks[uid].started_at.nanos))
    assert order == [5, 4, 3, 2, 1]
    assert all(t.status == T.TASK_STATUS_SUCCEEDED for t in tasks[1:])
    assert tasks[0].status == T.TASK_STATUS_ENQUEUED
    assert not tasks[2].HasField("details")  # snapshotCreation details are null
    dump_uid = tasks[1].details.dump_creation.dump_uid
    assert len(dump_uid) == 18 and dump_uid[8] == "-"
    assert (tmp_path / "dumps" / f"{dump_uid}.dump").exists()
    assert len(list((tmp_path / "snapshots").glob("*.snapshot"))) == 1


async def test_restart_requeues_processing_and_never_reuses_uids(config, clock):
    service = await app.start(config, background=False, clock=clock)
    # Indexes of their own, so 2 can start before 1 and still be processing at the restart.
    for index_uid in ("movies", "books", "songs"):
        await service.scheduler.enqueue(TaskType.INDEX_CREATION, index_uid, {})
    await start(service, 2)
    await start(service, 1)
    await finish(service, 1)
    deletion = await service.scheduler.delete_tasks(TaskQuery(uids=frozenset({1})))
    await service.scheduler.tick()
    await service.stop(0)

    service = await app.start(config, background=False, clock=clock)
    try:
        with pytest.raises(TaskHubError, match="not found"):
            await service.scheduler.get_task(1)
        requeued = await service.scheduler.get_task(2)
        if service.scheduler.replica.shared:
            # Replicas (PostgreSQL): a start ends no lease, which a worker may hold through another replica;
            # the lease's deadline does, as for a worker that died.
            assert requeued.status.label == "processing"
            clock.now += 2 * 3_600 * 1_000_000  # past the longest lease
            await service.scheduler.tick()
            requeued = await service.scheduler.get_task(2)
        assert (requeued.status.label, requeued.started_at) == ("enqueued", None)
        again = await service.scheduler.enqueue(TaskType.INDEX_CREATION, "movies", {})
        assert again.uid == deletion.uid + 1
    finally:
        await service.stop(0)


async def test_dump_and_snapshot_can_be_started_from(service, stub, config, clock, tmp_path, request):
    key = await service.keys.create(
        name="k", description=None, actions=["tasks.get"], indexes=["movies"], expires_at=None, uid=None
    )
    await enqueue(stub)
    await stub.CancelTasks(pb.CancelTasksRequest(filter=uid_filter(0)))
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION))
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_SNAPSHOT_CREATION))
    await service.scheduler.tick()
    dump = next((tmp_path / "dumps").glob("*.dump"))
    snapshot = next((tmp_path / "snapshots").glob("*.snapshot"))
    header = json.loads(dump.read_text().splitlines()[0])
    assert header["dumpVersion"] == 1

    for flag, path in (("import_dump", dump), ("import_snapshot", snapshot)):
        restored = await app.start(
            restored_config(config, flag, path, tmp_path, request), background=False, clock=clock
        )
        try:
            task = await restored.scheduler.get_task(0)
            assert (task.status.label, task.canceled_by) == ("canceled", 1)
            assert restored.store.tasks.matched_uids(1) == [0]
            # A snapshot keeps the batches (its own, open in the copy, ended when this server started); a dump
            # carries none yet, and its tasks then name none.
            batches = await restored.scheduler.list_batches(TaskQuery())
            if flag == "import_snapshot":
                assert (task.extra, [b.uid for b in batches.results]) == ({"batchUid": 0}, [1, 0])
                assert batches.results[0].statuses == {TaskStatus.ENQUEUED: 1}
            else:
                assert (task.extra, batches.total) == (None, 0)
            assert (await restored.scheduler.enqueue(TaskType.INDEX_CREATION, "movies", {})).uid == 4
            assert [(k.uid, k.name, k.indexes) for k in restored.store.keys.all_keys()] == [(key.uid, "k", ["movies"])]
        finally:
            await restored.stop(0)


async def test_uids_survive_deleting_the_newest_task(config, clock):
    service = await app.start(config, background=False, clock=clock)
    try:
        for name in ("a", "b", "c"):
            await service.scheduler.enqueue(TaskType.INDEX_CREATION, name, {"primaryKey": None})
        await start(service, 2)
        await finish(service, 2)
        await service.scheduler.delete_tasks(TaskQuery(uids=frozenset({2})))
        await service.scheduler.tick()
    finally:
        await service.stop(0)
    service = await app.start(config, background=False, clock=clock)
    try:
        with pytest.raises(TaskHubError, match="not found"):
            await service.scheduler.get_task(2)
        assert (await service.scheduler.enqueue(TaskType.INDEX_CREATION, "movies", None)).uid == 4
    finally:
        await service.stop(0)
