"""WorkerService over a real gRPC server: leasing, batching, order, reports, expiry, cancelation, bad input."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from google.protobuf import duration_pb2

from helpers import T, details_for, enqueue, error_of
from taskhub.errors import TaskHubError
from taskhub.server import app
from taskhub.server.model import TaskType
from taskhub.v1 import errors_pb2, task_pb2, task_service_pb2 as pb, worker_service_pb2 as wpb, worker_service_pb2_grpc


@pytest.fixture
def workers(channel) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(channel)


def seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromMicroseconds(int(value * 1_000_000))
    return duration


async def lease(workers, **fields) -> wpb.LeaseTasksResponse:
    return await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="test", **fields))


def uids(response) -> list[int]:
    return [t.uid for t in response.tasks]


async def status_of(stub, uid: int) -> int:
    return (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task.status


def succeeded(uid: int, **details) -> wpb.TaskOutcome:
    outcome = wpb.TaskOutcome(uid=uid)
    if details:
        outcome.details.CopyFrom(details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, **details))
    return outcome


async def test_lease_batches_consecutive_compatible_tasks_of_one_index(stub, workers):
    await enqueue(stub, "movies")  # 0 documents
    await enqueue(stub, "movies", T.TASK_TYPE_DOCUMENT_DELETION)  # 1 documents
    await enqueue(stub, "movies", T.TASK_TYPE_SETTINGS_UPDATE)  # 2 settings
    await enqueue(stub, "movies", T.TASK_TYPE_SETTINGS_UPDATE)  # 3 settings
    await enqueue(stub, "movies", T.TASK_TYPE_INDEX_UPDATE)  # 4 alone
    await enqueue(stub, "movies", T.TASK_TYPE_INDEX_UPDATE)  # 5 alone
    await enqueue(stub, "movies")  # 6 documents
    first = await lease(workers)
    assert uids(first) == [0, 1]
    assert all(t.status == T.TASK_STATUS_PROCESSING and t.HasField("started_at") for t in first.tasks)
    assert first.lease.token and first.lease.deadline.seconds > 0
    # One batch per index at a time: nothing else of `movies` until this one is reported.
    assert not (await lease(workers)).HasField("lease")
    await workers.CompleteTasks(
        wpb.CompleteTasksRequest(token=first.lease.token, outcomes=[succeeded(0), succeeded(1)])
    )
    batches = []
    for _ in range(4):
        batch = await lease(workers)
        batches.append(uids(batch))
        await workers.CompleteTasks(
            wpb.CompleteTasksRequest(token=batch.lease.token, outcomes=[succeeded(u) for u in uids(batch)])
        )
    assert batches == [[2, 3], [4], [5], [6]]


async def test_max_tasks_caps_a_batch(stub, workers):
    for _ in range(5):
        await enqueue(stub)
    assert uids(await lease(workers, max_tasks=3)) == [0, 1, 2]


async def test_indexes_run_in_parallel_in_uid_order(stub, workers):
    await enqueue(stub, "a")  # 0
    await enqueue(stub, "b")  # 1
    await enqueue(stub, "a", T.TASK_TYPE_INDEX_UPDATE)  # 2
    assert uids(await lease(workers)) == [0]
    assert uids(await lease(workers)) == [1]
    assert not (await lease(workers)).HasField("lease")


async def test_index_swap_holds_both_indexes(stub, workers):
    await enqueue(stub, "a")  # 0
    swap = pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_SWAP)
    swap.details.index_swap.swaps.add(indexes=["a", "b"])
    await stub.EnqueueTask(swap)  # 1
    await enqueue(stub, "b")  # 2: after the swap
    await enqueue(stub, "c")  # 3
    await enqueue(stub, "a")  # 4: after the swap, not batched with 0
    first = await lease(workers)
    assert uids(first) == [0]
    # The swap waits for `a`; `b` waits for the swap; `c` is free.
    assert uids(await lease(workers)) == [3]
    assert not (await lease(workers)).HasField("lease")
    await workers.CompleteTasks(wpb.CompleteTasksRequest(token=first.lease.token, outcomes=[succeeded(0)]))
    swap_lease = await lease(workers)
    assert uids(swap_lease) == [1]
    assert not (await lease(workers)).HasField("lease")


async def test_a_worker_never_skips_ahead_in_an_index(stub, workers):
    await enqueue(stub, "a")  # 0 documents
    await enqueue(stub, "a", T.TASK_TYPE_SETTINGS_UPDATE)  # 1 settings
    await enqueue(stub, "b", T.TASK_TYPE_SETTINGS_UPDATE)  # 2 settings
    settings_only = task_pb2.TypeSet(types=[T.TASK_TYPE_SETTINGS_UPDATE])
    assert uids(await lease(workers, types=settings_only)) == [2]
    assert uids(await lease(workers, index_uids=task_pb2.IndexUidSet(index_uids=["a"]))) == [0]


async def test_server_tasks_go_first(service, stub, workers):
    await enqueue(stub)
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION))
    assert not (await lease(workers)).HasField("lease")
    await service.scheduler.tick()
    assert uids(await lease(workers)) == [0]


async def test_reports_finish_tasks_with_details_and_errors(stub, workers):
    await enqueue(stub, "a", received_documents=5)
    await enqueue(stub, "a", received_documents=7)
    batch = await lease(workers)
    failed = wpb.TaskOutcome(uid=1, error=errors_pb2.TaskError(message="bad document", code="invalid_document"))
    done = await workers.CompleteTasks(
        wpb.CompleteTasksRequest(token=batch.lease.token, outcomes=[succeeded(0, indexed_documents=5), failed])
    )
    assert [(t.uid, t.status) for t in done.tasks] == [(0, T.TASK_STATUS_SUCCEEDED), (1, T.TASK_STATUS_FAILED)]
    ok = (await stub.GetTask(pb.GetTaskRequest(uid=0))).task
    assert ok.details.document_addition_or_update.indexed_documents == 5
    assert ok.HasField("duration") and ok.HasField("finished_at")
    bad = (await stub.GetTask(pb.GetTaskRequest(uid=1))).task
    assert bad.details.document_addition_or_update.indexed_documents == 0
    assert (bad.error.message, bad.error.code, bad.error.type, bad.error.link) == (
        "bad document",
        "invalid_document",
        "internal",
        "https://docs.meilisearch.com/errors#invalid_document",
    )


async def test_expired_lease_requeues_and_a_late_report_is_refused(service, stub, workers, clock):
    await enqueue(stub)
    batch = await lease(workers, lease_duration=seconds(10))
    clock.now += 11_000_000
    await service.scheduler.tick()
    task = (await stub.GetTask(pb.GetTaskRequest(uid=0))).task
    assert task.status == T.TASK_STATUS_ENQUEUED and not task.HasField("started_at")
    for call in (
        workers.CompleteTasks(wpb.CompleteTasksRequest(token=batch.lease.token, outcomes=[succeeded(0)])),
        workers.RenewLease(wpb.RenewLeaseRequest(token=batch.lease.token)),
    ):
        assert await error_of(call) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "lease_lost",
            f"Lease `{batch.lease.token}` was lost: it expired before being renewed.",
        )
    assert await status_of(stub, 0) == T.TASK_STATUS_ENQUEUED
    # The next lease gets it and its report counts, exactly once.
    again = await lease(workers)
    assert uids(again) == [0]
    await workers.CompleteTasks(wpb.CompleteTasksRequest(token=again.lease.token, outcomes=[succeeded(0)]))
    assert await status_of(stub, 0) == T.TASK_STATUS_SUCCEEDED


async def test_an_expired_but_unswept_lease_is_already_lost(stub, workers, clock):
    await enqueue(stub)
    batch = await lease(workers, lease_duration=seconds(5))
    clock.now += 6_000_000
    code, reason, _ = await error_of(
        workers.CompleteTasks(wpb.CompleteTasksRequest(token=batch.lease.token, outcomes=[succeeded(0)]))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "lease_lost")


async def test_renewal_extends_the_deadline(service, stub, workers, clock):
    await enqueue(stub)
    batch = await lease(workers, lease_duration=seconds(10))
    clock.now += 8_000_000
    renewed = await workers.RenewLease(wpb.RenewLeaseRequest(token=batch.lease.token))
    assert not renewed.canceled and renewed.deadline.seconds >= batch.lease.deadline.seconds + 8
    clock.now += 8_000_000
    await service.scheduler.tick()
    assert await status_of(stub, 0) == T.TASK_STATUS_PROCESSING


async def test_cancel_during_processing_stops_the_batch(service, stub, workers):
    for _ in range(3):
        await enqueue(stub)
    batch = await lease(workers)
    assert uids(batch) == [0, 1, 2]
    await stub.CancelTasks(pb.CancelTasksRequest(filter=task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=[1]))))
    await service.scheduler.tick()
    renewed = await workers.RenewLease(wpb.RenewLeaseRequest(token=batch.lease.token))
    assert renewed.canceled and not renewed.HasField("deadline")
    assert [await status_of(stub, u) for u in range(3)] == [
        T.TASK_STATUS_ENQUEUED,
        T.TASK_STATUS_CANCELED,
        T.TASK_STATUS_ENQUEUED,
    ]
    code, reason, message = await error_of(
        workers.CompleteTasks(
            wpb.CompleteTasksRequest(token=batch.lease.token, outcomes=[succeeded(0), succeeded(1), succeeded(2)])
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "lease_lost")
    assert message.endswith("its batch was canceled.")
    # A new batch forms with the remaining tasks, without the canceled one.
    assert uids(await lease(workers)) == [0, 2]


async def test_attempts_run_out(config, clock):
    service = await app.start(dataclasses.replace(config, max_attempts=2), background=False, clock=clock)
    try:
        await service.scheduler.enqueue(TaskType.INDEX_CREATION, "a", None)
        for _ in range(2):
            assert await service.scheduler.lease(worker="w", duration=1_000_000)
            clock.now += 2_000_000
            await service.scheduler.tick()
        task = await service.scheduler.get_task(0)
        assert task.status.label == "failed"
        assert task.error["code"] == "task_attempts_exhausted"
        assert task.error["message"] == (
            "The task's lease expired without a report from a worker; after 2 attempts it will not be tried again."
        )
        assert task.extra == {"batchUid": 1, "worker": "w", "attempts": 2}
        assert await service.scheduler.lease(worker="w") is None
    finally:
        await service.stop(0)


async def test_release_gives_tasks_back(stub, workers):
    await enqueue(stub)
    batch = await lease(workers)
    assert (await workers.ReleaseLease(wpb.ReleaseLeaseRequest(token=batch.lease.token))).released_tasks == 1
    assert await status_of(stub, 0) == T.TASK_STATUS_ENQUEUED


async def test_lease_long_polls_until_work_arrives(stub, workers):
    waiting = asyncio.ensure_future(lease(workers, wait=seconds(5)))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await enqueue(stub)
    assert uids(await asyncio.wait_for(waiting, 3)) == [0]
    # With nothing to do, the wait ends empty.
    assert not (await lease(workers, wait=seconds(0.2))).HasField("lease")


async def test_restart_loses_leases(config, clock):
    service = await app.start(config, background=False, clock=clock)
    await service.scheduler.enqueue(TaskType.INDEX_CREATION, "a", None)
    held = await service.scheduler.lease(worker="w")
    await service.stop(0)
    service = await app.start(config, background=False, clock=clock)
    try:
        if service.scheduler.replica.shared:
            # Replicas (PostgreSQL): the lease is the database's, held across a start; the worker reports.
            await service.scheduler.complete(held.token, {0: (None, None, None)})
            assert (await service.scheduler.get_task(0)).status.label == "succeeded"
            return
        with pytest.raises(TaskHubError) as lost:
            await service.scheduler.complete(held.token, {0: (None, None, None)})
        assert lost.value.message.endswith("the server restarted.")
        assert (await service.scheduler.get_task(0)).status.label == "enqueued"
    finally:
        await service.stop(0)


@pytest.mark.parametrize(
    "outcomes, message",
    [
        ([succeeded(0), succeeded(7)], "Task `7` is not part of lease"),
        ([succeeded(0)], "The outcome of task `1` is missing."),
        ([succeeded(0), succeeded(0)], "Task `0` is reported twice."),
        (
            [wpb.TaskOutcome(uid=0, details=details_for(T.TASK_TYPE_INDEX_CREATION, primary_key="x")), succeeded(1)],
            "Task `0` is a `documentAdditionOrUpdate` task; its details must be of that type.",
        ),
        (
            [succeeded(0, received_documents=3), succeeded(1)],
            "`receivedDocuments` cannot be reported for a `documentAdditionOrUpdate` task",
        ),
        (
            [wpb.TaskOutcome(uid=0, error=errors_pb2.TaskError(code="x")), succeeded(1)],
            "A failed task's error needs a `message`.",
        ),
        (
            [wpb.TaskOutcome(uid=0, error=errors_pb2.TaskError(message="m", code="Bad Code")), succeeded(1)],
            "A failed task's error needs a `code` of lower-case letters, digits and `_`.",
        ),
        (
            [wpb.TaskOutcome(uid=0, error=errors_pb2.TaskError(message="m", code="c", type="weird")), succeeded(1)],
            "An error's `type` is one of `invalid_request`, `internal`, `auth`, `system`.",
        ),
    ],
)
async def test_bad_reports_are_refused_and_change_nothing(stub, workers, outcomes, message):
    await enqueue(stub)
    await enqueue(stub)
    batch = await lease(workers)
    code, reason, text = await error_of(
        workers.CompleteTasks(wpb.CompleteTasksRequest(token=batch.lease.token, outcomes=outcomes))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_outcome")
    assert text.startswith(message)
    assert [await status_of(stub, u) for u in (0, 1)] == [T.TASK_STATUS_PROCESSING] * 2
    # The lease is still good: a correct report goes through.
    await workers.CompleteTasks(
        wpb.CompleteTasksRequest(token=batch.lease.token, outcomes=[succeeded(0), succeeded(1)])
    )


async def test_unknown_lease_token_is_lost(workers):
    assert await error_of(workers.RenewLease(wpb.RenewLeaseRequest(token="nope"))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "lease_lost",
        "Lease `nope` is unknown.",
    )


async def test_workers_cannot_lease_server_tasks(workers):
    code, reason, _ = await error_of(lease(workers, types=task_pb2.TypeSet(types=[T.TASK_TYPE_DUMP_CREATION])))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_types")
