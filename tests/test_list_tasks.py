"""ListTasks over gRPC: every filter alone and combined, paging both ways, bad filter values."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2

from helpers import T, enqueue, error_of, finish, start
from taskhub.v1 import task_pb2, task_service_pb2 as pb


def ts(micros: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1_000)


async def uids_of(stub, limit: int = 100, **filter_fields) -> list[int]:
    response = await stub.ListTasks(pb.ListTasksRequest(filter=task_pb2.TaskFilter(**filter_fields), limit=limit))
    return [t.uid for t in response.results]


@pytest.fixture
async def dataset(service, stub):
    """Six tasks in two indexes: 0 succeeded, 1 failed, 2 processing, 3-5 enqueued, then 6 cancels 4."""
    await enqueue(stub, "movies")  # 0
    await enqueue(stub, "movies", T.TASK_TYPE_INDEX_CREATION, primary_key="id")  # 1
    await enqueue(stub, "books")  # 2
    await enqueue(stub, "books", T.TASK_TYPE_SETTINGS_UPDATE)  # 3
    await enqueue(stub, "movies", T.TASK_TYPE_INDEX_DELETION)  # 4
    await enqueue(stub, "books")  # 5
    # 0 and 1 share an index, so 1 starts once 0 is done, as a worker would get them.
    await start(service, 0)
    await finish(service, 0, details={"indexedDocuments": 10})
    await start(service, 1)
    await finish(service, 1, error={"message": "boom", "code": "internal", "type": "internal", "link": "x#internal"})
    await start(service, 2)
    cancel = await stub.CancelTasks(pb.CancelTasksRequest(filter=task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=[4]))))
    assert cancel.task.task_uid == 6
    await service.scheduler.tick()
    return {uid: await service.scheduler.get_task(uid) for uid in range(7)}


async def test_default_order_is_newest_first(stub, dataset):
    assert await uids_of(stub) == [6, 5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"uids": task_pb2.UidSet(uids=[1, 3, 99])}, [3, 1]),
        ({"uids": task_pb2.UidSet()}, []),
        ({"index_uids": task_pb2.IndexUidSet(index_uids=["books"])}, [5, 3, 2]),
        ({"index_uids": task_pb2.IndexUidSet(index_uids=["Books"])}, []),
        ({"index_uids": task_pb2.IndexUidSet(index_uids=["books", "movies"])}, [5, 4, 3, 2, 1, 0]),
        ({"statuses": task_pb2.StatusSet(statuses=[T.TASK_STATUS_ENQUEUED])}, [5, 3]),
        ({"statuses": task_pb2.StatusSet(statuses=[T.TASK_STATUS_PROCESSING])}, [2]),
        ({"statuses": task_pb2.StatusSet(statuses=[T.TASK_STATUS_SUCCEEDED])}, [6, 0]),
        ({"statuses": task_pb2.StatusSet(statuses=[T.TASK_STATUS_FAILED, T.TASK_STATUS_CANCELED])}, [4, 1]),
        ({"types": task_pb2.TypeSet(types=[T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE])}, [5, 2, 0]),
        ({"types": task_pb2.TypeSet(types=[T.TASK_TYPE_TASK_CANCELATION, T.TASK_TYPE_INDEX_CREATION])}, [6, 1]),
        ({"canceled_by": task_pb2.UidSet(uids=[6])}, [4]),
        ({"canceled_by": task_pb2.UidSet(uids=[5])}, []),
    ],
)
async def test_each_filter_alone(stub, dataset, fields, expected):
    assert await uids_of(stub, **fields) == expected


async def test_date_bounds_are_exclusive_and_skip_null_dates(stub, dataset):
    enq = {uid: t.enqueued_at for uid, t in dataset.items()}
    assert await uids_of(stub, before_enqueued_at=ts(enq[2])) == [1, 0]
    assert await uids_of(stub, after_enqueued_at=ts(enq[4])) == [6, 5]
    assert await uids_of(stub, after_enqueued_at=ts(enq[1]), before_enqueued_at=ts(enq[4])) == [3, 2]
    started = {uid: t.started_at for uid, t in dataset.items() if t.started_at}
    assert sorted(started) == [0, 1, 2, 6]  # 4 was canceled while enqueued: never started
    assert await uids_of(stub, after_started_at=ts(started[0])) == [6, 2, 1]
    assert await uids_of(stub, before_started_at=ts(started[1])) == [0]
    finished = {uid: t.finished_at for uid, t in dataset.items() if t.finished_at}
    assert sorted(finished) == [0, 1, 4, 6]
    assert await uids_of(stub, before_finished_at=ts(finished[4])) == [1, 0]
    assert await uids_of(stub, after_finished_at=ts(finished[0])) == [6, 4, 1]
    # A sub-microsecond part never widens an exclusive bound.
    bound = ts(enq[2])
    bound.nanos += 1
    assert await uids_of(stub, after_enqueued_at=bound) == [6, 5, 4, 3]
    assert await uids_of(stub, before_enqueued_at=bound) == [2, 1, 0]


async def test_filters_combine_with_and(stub, dataset):
    assert await uids_of(
        stub,
        index_uids=task_pb2.IndexUidSet(index_uids=["books"]),
        types=task_pb2.TypeSet(types=[T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE]),
        statuses=task_pb2.StatusSet(statuses=[T.TASK_STATUS_ENQUEUED, T.TASK_STATUS_PROCESSING]),
    ) == [5, 2]
    assert await uids_of(
        stub,
        uids=task_pb2.UidSet(uids=[0, 1, 2, 3]),
        statuses=task_pb2.StatusSet(statuses=[T.TASK_STATUS_SUCCEEDED]),
        after_enqueued_at=ts(dataset[0].enqueued_at - 1),
    ) == [0]


async def test_total_counts_every_match_ignoring_paging(stub, dataset):
    response = await stub.ListTasks(
        pb.ListTasksRequest(
            filter=task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["movies"])), limit=2, **{"from": 1}
        )
    )
    assert [t.uid for t in response.results] == [1, 0]
    assert (response.total, response.limit, getattr(response, "from"), response.HasField("next")) == (3, 2, 1, False)


@pytest.mark.parametrize("reverse", [False, True])
async def test_paging_walks_every_task_once(stub, reverse):
    for _ in range(23):
        await enqueue(stub)
    seen, from_uid, pages = [], None, 0
    while True:
        request = pb.ListTasksRequest(limit=5, reverse=reverse)
        if from_uid is not None:
            setattr(request, "from", from_uid)
        response = await stub.ListTasks(request)
        pages += 1
        assert response.total == 23 and response.limit == 5
        seen += [t.uid for t in response.results]
        assert getattr(response, "from") == response.results[0].uid
        if not response.HasField("next"):
            break
        from_uid = response.next
    assert pages == 5
    assert seen == (list(range(23)) if reverse else list(range(22, -1, -1)))


async def test_default_limit_is_twenty_and_empty_page_has_no_from(stub):
    for _ in range(21):
        await enqueue(stub)
    page = await stub.ListTasks(pb.ListTasksRequest())
    assert (len(page.results), page.limit, page.next) == (20, 20, 0)
    empty = await stub.ListTasks(pb.ListTasksRequest(filter=task_pb2.TaskFilter(uids=task_pb2.UidSet())))
    assert (list(empty.results), empty.total, empty.HasField("from"), empty.HasField("next")) == ([], 0, False, False)


async def test_out_of_bounds_from_starts_at_the_nearest_task(stub):
    for _ in range(3):
        await enqueue(stub)
    assert [t.uid for t in (await stub.ListTasks(pb.ListTasksRequest(**{"from": 1000}))).results] == [2, 1, 0]


@pytest.mark.parametrize(
    "fields, reason, message",
    [
        (
            {"statuses": task_pb2.StatusSet(statuses=[0])},
            "invalid_task_statuses",
            "Invalid value in parameter `statuses`: `TASK_STATUS_UNSPECIFIED` is not a valid task status. Available"
            " statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`.",
        ),
        (
            {"statuses": task_pb2.StatusSet(statuses=[1, 77])},
            "invalid_task_statuses",
            "Invalid value in parameter `statuses[1]`: `77` is not a valid task status. Available"
            " statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`.",
        ),
        (
            {"types": task_pb2.TypeSet(types=[0])},
            "invalid_task_types",
            "Invalid value in parameter `types`: `TASK_TYPE_UNSPECIFIED` is not a valid task type. Available types are"
            " `indexCreation`, `indexUpdate`, `indexDeletion`, `indexSwap`, `documentAdditionOrUpdate`,"
            " `documentDeletion`, `settingsUpdate`, `dumpCreation`, `taskCancelation`, `taskDeletion`,"
            " `snapshotCreation`.",
        ),
        (
            {"index_uids": task_pb2.IndexUidSet(index_uids=["the good doggo"])},
            "invalid_task_index_uids",
            "Invalid value in parameter `indexUids`: `the good doggo` is not a valid index uid. Index uid can be an"
            " integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can"
            " not be more than 400 bytes.",
        ),
        (
            {"index_uids": task_pb2.IndexUidSet(index_uids=["ok", ""])},
            "invalid_task_index_uids",
            "Invalid value in parameter `indexUids[1]`: `` is not a valid index uid. Index uid can be an"
            " integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can"
            " not be more than 400 bytes.",
        ),
    ],
)
async def test_bad_filter_values_are_invalid_argument(stub, fields, reason, message):
    for call in (
        stub.ListTasks(pb.ListTasksRequest(filter=task_pb2.TaskFilter(**fields))),
        stub.CancelTasks(pb.CancelTasksRequest(filter=task_pb2.TaskFilter(**fields))),
        stub.DeleteTasks(pb.DeleteTasksRequest(filter=task_pb2.TaskFilter(**fields))),
    ):
        assert await error_of(call) == (grpc.StatusCode.INVALID_ARGUMENT, reason, message)
    # A refused cancel or delete enqueued nothing.
    assert (await stub.ListTasks(pb.ListTasksRequest())).total == 0
