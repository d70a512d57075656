"""The Python client, sync and asyncio, against a real in-process server over a real channel."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest

import helpers
from conftest import START
from taskhub.client import (
    AsyncTaskHubClient,
    RetryPolicy,
    Task,
    TaskError,
    TaskFilter,
    TaskHubClient,
    TaskHubError,
    TaskPage,
    TaskStatus,
    TaskSummary,
    TaskTimeoutError,
    TaskType,
)
from taskhub.client.models import format_duration
from taskhub.server import app
from taskhub.v1 import task_service_pb2 as pb, task_service_pb2_grpc

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.2)


def at(millis: int) -> datetime:
    """The fake clock's reading number `millis` (each reading advances it by 1 ms)."""
    return datetime.fromtimestamp(START / 1_000_000, UTC) + timedelta(milliseconds=millis)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def until(predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
async def client(service):
    async with AsyncTaskHubClient(service.grpc_target, retry=FAST) as client:
        yield client


@pytest.fixture
def sync_client(service):
    with TaskHubClient(service.grpc_target, retry=FAST) as client:
        yield client


async def error_of(awaitable) -> TaskHubError:
    with pytest.raises(TaskHubError) as caught:
        await awaitable
    return caught.value


# -- the async client -------------------------------------------------------


async def test_enqueue_answers_a_summary_and_get_answers_the_typed_task(client):
    summary = await client.enqueue("documentAdditionOrUpdate", "movies", {"receivedDocuments": 3})
    assert summary == TaskSummary(
        task_uid=0,
        index_uid="movies",
        status=TaskStatus.ENQUEUED,
        type=TaskType.DOCUMENT_ADDITION_OR_UPDATE,
        enqueued_at=at(1),
    )
    assert summary.to_dict() == {
        "taskUid": 0,
        "indexUid": "movies",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "enqueuedAt": "2023-11-14T22:13:20.001000Z",
    }
    task = await client.get_task(0)
    assert task == Task(
        uid=0,
        index_uid="movies",
        status=TaskStatus.ENQUEUED,
        type=TaskType.DOCUMENT_ADDITION_OR_UPDATE,
        canceled_by=None,
        details={"receivedDocuments": 3, "indexedDocuments": None},
        error=None,
        duration=None,
        enqueued_at=at(1),
        started_at=None,
        finished_at=None,
    )
    assert task.status == "enqueued" and task.type == "documentAdditionOrUpdate"


async def test_enqueue_tasks_answers_summaries_in_order(client):
    summaries = await client.enqueue_tasks(
        [
            ("indexCreation", "books", {"primaryKey": "id"}),
            (TaskType.DOCUMENT_ADDITION_OR_UPDATE, "movies", {"receivedDocuments": 4}),
            ("dumpCreation",),
        ]
    )
    assert [(s.task_uid, s.index_uid, s.type) for s in summaries] == [
        (0, "books", TaskType.INDEX_CREATION),
        (1, "movies", TaskType.DOCUMENT_ADDITION_OR_UPDATE),
        (2, None, TaskType.DUMP_CREATION),
    ]
    assert (await client.get_task(1)).details == {"receivedDocuments": 4, "indexedDocuments": None}
    # A bad task is named by its position, whether the client or the server finds it; nothing is stored.
    error = await error_of(client.enqueue_tasks([("indexCreation", "a"), ("flyToTheMoon", "b")]))
    assert (error.code, error.message.split(":")[0]) == ("invalid_task_types", "`tasks[1]`")
    error = await error_of(client.enqueue_tasks([("indexCreation", "a"), ("indexCreation", "b c")]))
    assert (error.code, error.message.split(":")[0]) == ("invalid_index_uid", "`tasks[1]`")
    assert (await error_of(client.enqueue_tasks([]))).code == "invalid_task_batch"
    assert (await client.list_tasks()).total == 3


async def test_details_of_every_shape_round_trip(client):
    await client.enqueue(TaskType.INDEX_CREATION, "movies", {"primaryKey": "id"})
    await client.enqueue("settingsUpdate", "movies", {"rankingRules": ["typo"], "pagination": {"maxTotalHits": 5}})
    await client.enqueue("INDEXSWAP", details={"swaps": [{"indexes": ["a", "b"]}]})
    await client.enqueue("documentDeletion", "movies", {"provided_ids": 2})
    await client.enqueue("snapshotCreation")
    assert [(t.uid, t.details) for t in (await client.list_tasks()).results] == [
        (4, None),
        (3, {"providedIds": 2, "deletedDocuments": None, "originalFilter": None}),
        (2, {"swaps": [{"indexes": ["a", "b"]}]}),
        (1, {"rankingRules": ["typo"], "pagination": {"maxTotalHits": 5}}),
        (0, {"primaryKey": "id"}),
    ]


async def test_bad_enqueues_raise_the_public_codes(client):
    error = await error_of(client.enqueue("doggo", "movies"))
    assert (error.code, error.message) == (
        "invalid_task_types",
        (
            "Invalid value in parameter `type`: `doggo` is not a valid task type. Available types are `indexCreation`,"
            " `indexUpdate`, `indexDeletion`, `indexSwap`, `documentAdditionOrUpdate`, `documentDeletion`,"
            " `settingsUpdate`, `dumpCreation`, `taskCancelation`, `taskDeletion`, `snapshotCreation`."
        ),
    )
    error = await error_of(client.enqueue("indexCreation", "movies", {"primaryKee": "id"}))
    assert (error.code, error.message) == (
        "invalid_task_details",
        "`primaryKee` is not a detail of a `indexCreation` task; its details are `primaryKey`.",
    )
    assert (await error_of(client.enqueue("indexCreation"))).code == "invalid_index_uid"  # from the server
    assert (await error_of(client.enqueue("documentAdditionOrUpdate", "movies"))).code == "invalid_task_details"


async def test_missing_task_raises_task_not_found(client):
    error = await error_of(client.get_task(9))
    assert (error.code, error.message, error.type) == ("task_not_found", "Task `9` not found.", "invalid_request")


async def test_list_pages_follow_next_and_iter_tasks_walks_every_page(client):
    for index in ("movies", "books", "movies", "movies", "books"):
        await client.enqueue("indexCreation", index)
    page = await client.list_tasks(limit=2)
    assert ([t.uid for t in page.results], page.total, page.limit, page.from_, page.next) == ([4, 3], 5, 2, 4, 2)
    last = await client.list_tasks(limit=2, from_=page.next - 2)
    assert ([t.uid for t in last.results], last.from_, last.next) == ([0], 0, None)
    page = await client.list_tasks(index_uids="movies", reverse=True, limit=2)
    assert ([t.uid for t in page.results], page.total, page.from_, page.next) == ([0, 2], 3, 0, 3)
    assert [t.uid async for t in client.iter_tasks(page_size=2)] == [4, 3, 2, 1, 0]
    assert [t.uid async for t in client.iter_tasks(TaskFilter(index_uids=["books"]), page_size=1)] == [4, 1]
    assert [t.uid async for t in client.iter_tasks(page_size=3, reverse=True, uids=[1, 3, 4])] == [1, 3, 4]
    empty = await client.list_tasks(uids=[])
    assert empty == TaskPage(results=[], total=0, limit=20, from_=None, next=None)
    assert empty.to_dict() == {"results": [], "total": 0, "limit": 20, "from": None, "next": None}


async def test_filters_take_python_values(client, service):
    # An index each, so 1 can run while 0 waits.
    for index_uid in ("movies", "books", "songs"):
        await client.enqueue("indexCreation", index_uid)  # enqueued at readings 1, 2, 3
    await helpers.start(service, 1)
    await helpers.finish(
        service,
        1,
        error={
            "message": "boom",
            "code": "internal",
            "type": "internal",
            "link": "https://docs.meilisearch.com/errors#internal",
        },
    )
    uids = lambda page: [t.uid for t in page.results]  # noqa: E731
    assert uids(await client.list_tasks(statuses=["FAILED", "enqueued"])) == [2, 1, 0]
    assert uids(await client.list_tasks(statuses="failed")) == [1]
    assert uids(await client.list_tasks(types=["indexCreation"], uids=[0, 2])) == [2, 0]
    assert uids(await client.list_tasks(after_enqueued_at=at(1))) == [2, 1]
    assert uids(await client.list_tasks(before_enqueued_at="2023-11-14T22:13:20.003Z")) == [1, 0]
    assert uids(await client.list_tasks(before_enqueued_at="2023-11-14T23:13:20.0025+01:00")) == [1, 0]
    assert uids(await client.list_tasks(after_started_at=at(0), before_finished_at=at(6))) == [1]
    assert uids(await client.list_tasks(after_enqueued_at=date(2023, 11, 13))) == [2, 1, 0]
    assert uids(await client.list_tasks(after_enqueued_at="2023-11-14")) == []
    assert uids(await client.list_tasks(statuses="*", index_uids=["*", "books"])) == [2, 1, 0]


async def test_bad_filters_raise_the_http_apis_errors(client):
    cases = [
        (
            dict(statuses=["enqueued", "doggo"]),
            "invalid_task_statuses",
            "Invalid value in parameter `statuses[1]`: `doggo` is not a valid task status. Available statuses are"
            " `enqueued`, `processing`, `succeeded`, `failed`, `canceled`.",
        ),
        (
            dict(uids="doggo"),
            "invalid_task_uids",
            "Invalid value in parameter `uids`: could not parse `doggo` as a positive integer",
        ),
        (
            dict(canceled_by=[1, -2]),
            "invalid_task_canceled_by",
            "Invalid value in parameter `canceledBy[1]`: could not parse `-2` as a positive integer",
        ),
        (
            dict(after_enqueued_at="doggo"),
            "invalid_task_after_enqueued_at",
            "Invalid value in parameter `afterEnqueuedAt`: `doggo` is an invalid date-time. It should follow the"
            " YYYY-MM-DD or RFC 3339 date-time format.",
        ),
        (dict(before_finished_at="2023-13-01"), "invalid_task_before_finished_at", None),
        (
            dict(index_uids="the good doggo"),
            "invalid_task_index_uids",  # checked by the server
            "Invalid value in parameter `indexUids`: `the good doggo` is not a valid index uid. Index uid can be an"
            " integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can"
            " not be more than 400 bytes.",
        ),
    ]
    for filters, code, message in cases:
        error = await error_of(client.list_tasks(**filters))
        assert error.code == code, filters
        if message is not None:
            assert error.message == message
    with pytest.raises(TypeError):
        await client.list_tasks(TaskFilter(uids=[1]), statuses="failed")


async def test_cancel_and_delete_enqueue_global_tasks(client, service):
    for _ in range(3):
        await client.enqueue("indexCreation", "movies")
    summary = await client.cancel_tasks(uids=[0, 1])
    assert (summary.task_uid, summary.index_uid, summary.type) == (3, None, TaskType.TASK_CANCELATION)
    await service.scheduler.tick()
    cancelation = await client.get_task(3)
    assert (cancelation.status, cancelation.details) == (
        TaskStatus.SUCCEEDED,
        {"matchedTasks": 2, "canceledTasks": 2, "originalFilter": "?uids=0%2C1"},
    )
    canceled = await client.get_task(0)
    assert (canceled.status, canceled.canceled_by) == (TaskStatus.CANCELED, 3)
    assert [t.uid for t in (await client.list_tasks(canceled_by=3)).results] == [1, 0]

    summary = await client.delete_tasks(TaskFilter(statuses=["canceled"]))
    assert (summary.task_uid, summary.type) == (4, TaskType.TASK_DELETION)
    await service.scheduler.tick()
    assert (await client.get_task(4)).details == {
        "matchedTasks": 2,
        "deletedTasks": 2,
        "originalFilter": "?statuses=canceled",
    }
    assert (await error_of(client.get_task(0))).code == "task_not_found"


async def test_cancel_and_delete_without_filters_are_rejected(client):
    error = await error_of(client.cancel_tasks())
    assert error.code == "missing_task_filters"
    assert error.message.startswith("Query parameters to filter the tasks to cancel are missing.")
    assert (await error_of(client.delete_tasks(TaskFilter()))).code == "missing_task_filters"
    # `*` still counts as a filter, as `statuses=*` does over HTTP.
    assert (await client.cancel_tasks(uids="*")).type == TaskType.TASK_CANCELATION


async def test_watch_yields_each_state_until_the_end(client, service):
    await client.enqueue("documentAdditionOrUpdate", "movies", {"receivedDocuments": 3})
    states = []

    async def watch():
        async for task in client.watch_task(0):
            states.append(task)

    watcher = asyncio.create_task(watch())
    await until(lambda: len(states) == 1)
    await helpers.start(service, 0)
    await helpers.finish(service, 0, details={"indexedDocuments": 3})
    await asyncio.wait_for(watcher, 5)
    assert [t.status for t in states] == ["enqueued", "processing", "succeeded"]
    assert states[-1].to_dict() == {
        "uid": 0,
        "indexUid": "movies",
        "status": "succeeded",
        "type": "documentAdditionOrUpdate",
        "canceledBy": None,
        "details": {"receivedDocuments": 3, "indexedDocuments": 3},
        "error": None,
        "duration": "PT0.001S",
        "enqueuedAt": "2023-11-14T22:13:20.001000Z",
        "startedAt": "2023-11-14T22:13:20.002000Z",
        "finishedAt": "2023-11-14T22:13:20.003000Z",
        "batchUid": 0,
        "worker": "tests",
    }
    assert (await error_of(anext(client.watch_task(7)))).code == "task_not_found"


async def test_wait_for_task_answers_the_terminal_task(client, service):
    await client.enqueue("indexCreation", "movies")
    waiter = asyncio.create_task(client.wait_for_task(0, timeout=5))
    await until(lambda: service.scheduler.hub.watchers == 1)
    await helpers.start(service, 0)
    error = {
        "message": "Index `movies` already exists.",
        "code": "index_already_exists",
        "type": "invalid_request",
        "link": "https://docs.meilisearch.com/errors#index_already_exists",
    }
    await helpers.finish(service, 0, error=error)
    task = await waiter
    assert (task.status, task.error) == (TaskStatus.FAILED, TaskError(**error))
    assert task.duration == timedelta(milliseconds=1)
    assert task.finished_at == at(3) and task.started_at == at(2)


async def test_wait_for_task_times_out_with_a_clear_error(client):
    await client.enqueue("indexCreation", "movies")
    with pytest.raises(TimeoutError) as caught:
        await client.wait_for_task(0, timeout=0.2)
    error = caught.value
    assert isinstance(error, TaskTimeoutError) and isinstance(error, TaskHubError)
    assert (error.code, error.type, error.message) == (
        "timeout",
        "system",
        "Task `0` did not reach a terminal status within 0.2 seconds.",
    )


async def test_watch_subscribes_again_after_a_server_restart(config, clock):
    config.grpc_listen = f"127.0.0.1:{free_port()}"
    service = await app.start(config, background=False, clock=clock)
    try:
        async with AsyncTaskHubClient(service.grpc_target, retry=FAST) as client:
            await client.enqueue("indexCreation", "movies")
            states = []

            async def watch():
                async for task in client.watch_task(0):
                    states.append(task.status)

            watcher = asyncio.create_task(watch())
            await until(lambda: states == ["enqueued"])
            await service.stop(0)
            service = await app.start(config, background=False, clock=clock)
            await until(lambda: service.scheduler.hub.watchers == 1)
            await helpers.start(service, 0)
            await helpers.finish(service, 0)
            await asyncio.wait_for(watcher, 5)
            assert states == ["enqueued", "processing", "succeeded"]  # the repeated `enqueued` is not yielded
    finally:
        await service.stop(0)


# -- retries, timeouts, metadata ----------------------------------------------


class UnavailableTaskService(task_service_pb2_grpc.TaskServiceServicer):
    """A stand-in server that answers every call UNAVAILABLE, recording each attempt and its idempotency key."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.keys: list[str] = []

    async def _refuse(self, name: str, request, context) -> None:
        self.calls.append(name)
        if name.startswith("Enqueue"):
            self.keys.append(request.idempotency_key)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")

    async def GetTask(self, request, context):
        await self._refuse("GetTask", request, context)

    async def ListTasks(self, request, context):
        await self._refuse("ListTasks", request, context)

    async def EnqueueTask(self, request, context):
        await self._refuse("EnqueueTask", request, context)

    async def EnqueueTasks(self, request, context):
        await self._refuse("EnqueueTasks", request, context)

    async def CancelTasks(self, request, context):
        await self._refuse("CancelTasks", request, context)

    async def DeleteTasks(self, request, context):
        await self._refuse("DeleteTasks", request, context)


async def test_only_idempotent_calls_are_retried_on_unavailable():
    """gRPC retries them (the channel's service config), FAST's 4 attempts each; enqueues count as idempotent:
    each call sends a key of its own, the same on each of its retries."""
    refusing = UnavailableTaskService()
    server = grpc.aio.server()
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(refusing, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with AsyncTaskHubClient(f"127.0.0.1:{port}", retry=FAST, timeout=5) as client:
            for call in (
                lambda: client.get_task(0),
                lambda: client.list_tasks(),
                lambda: client.enqueue("dumpCreation"),
                lambda: client.enqueue_tasks([("dumpCreation",)]),
                lambda: client.cancel_tasks(uids=[1]),
                lambda: client.delete_tasks(uids=[1]),
            ):
                with pytest.raises(TaskHubError) as caught:
                    await call()
                assert caught.value.code == "unavailable"
    finally:
        await server.stop(0)
    assert refusing.calls == (
        ["GetTask"] * 4
        + ["ListTasks"] * 4
        + ["EnqueueTask"] * 4
        + ["EnqueueTasks"] * 4
        + ["CancelTasks", "DeleteTasks"]
    )
    # One key per call, sent on each of its attempts; two calls, two keys.
    keys = refusing.keys
    assert len(set(keys[:4])) == len(set(keys[4:])) == 1 and keys[0] != keys[4]
    assert all(keys)


async def test_a_retried_get_reaches_a_server_that_comes_up_late(config, clock):
    config.grpc_listen = f"127.0.0.1:{free_port()}"
    # gRPC's 5 attempts at most, spread over about 3 s on average.
    retry = RetryPolicy(max_attempts=5, initial_backoff=0.5, max_backoff=2.0)
    with TaskHubClient(config.grpc_listen, retry=retry) as client:
        pending = asyncio.create_task(asyncio.to_thread(client.get_task, 0))
        await asyncio.sleep(0.1)
        service = await app.start(config, background=False, clock=clock)
        try:
            with pytest.raises(TaskHubError) as caught:
                await pending
            assert caught.value.code == "task_not_found"  # an answer from the server, not `unavailable`
        finally:
            await service.stop(0)


class RecordingTaskService(task_service_pb2_grpc.TaskServiceServicer):
    """A stand-in server that records the metadata and deadline it receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict, float | None]] = []

    async def GetTask(self, request, context):
        self.seen.append((dict(context.invocation_metadata()), context.time_remaining()))
        return pb.GetTaskResponse(task={"uid": request.uid, "status": 1, "type": 1, "index_uid": "movies"})


async def test_api_key_and_default_timeout_travel_with_every_call():
    recorder = RecordingTaskService()
    server = grpc.aio.server()
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with AsyncTaskHubClient(f"127.0.0.1:{port}", api_key="s3cret", timeout=3) as client:
            assert (await client.get_task(5)).uid == 5
        with TaskHubClient(f"127.0.0.1:{port}") as client:
            await asyncio.to_thread(client.get_task, 6)
    finally:
        await server.stop(0)
    (first, first_deadline), (second, second_deadline) = recorder.seen
    assert first["authorization"] == "Bearer s3cret" and "authorization" not in second
    # The deadline travels as a relative timeout; gRPC may round it up a little on the way.
    assert 2 < first_deadline < 3.5 and 9 < second_deadline < 10.5


# -- the sync client ------------------------------------------------------------


async def test_sync_client_covers_every_method(sync_client, service):
    run = asyncio.to_thread
    summary = await run(sync_client.enqueue, "documentAdditionOrUpdate", "movies", {"receivedDocuments": 2})
    assert summary.to_dict() == {
        "taskUid": 0,
        "indexUid": "movies",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "enqueuedAt": "2023-11-14T22:13:20.001000Z",
    }
    batch = await run(sync_client.enqueue_tasks, [("indexCreation", "books")] * 3)
    assert [s.task_uid for s in batch] == [1, 2, 3]
    await run(sync_client.enqueue, "indexCreation", "books")
    assert (await run(sync_client.get_task, 0)).details == {"receivedDocuments": 2, "indexedDocuments": None}
    page = await run(lambda: sync_client.list_tasks(index_uids="books", limit=3))
    assert ([t.uid for t in page.results], page.total, page.next) == ([4, 3, 2], 4, 1)
    assert await run(lambda: [t.uid for t in sync_client.iter_tasks(page_size=2, reverse=True)]) == [0, 1, 2, 3, 4]

    states: list[Task] = []
    watcher = asyncio.create_task(run(lambda: states.extend(sync_client.watch_task(0))))
    await until(lambda: len(states) == 1)
    await helpers.start(service, 0)
    await helpers.finish(service, 0, details={"indexedDocuments": 2})
    await watcher
    assert [t.status for t in states] == ["enqueued", "processing", "succeeded"]
    assert (await run(sync_client.wait_for_task, 0, 1)).details == {"receivedDocuments": 2, "indexedDocuments": 2}

    waiter = asyncio.create_task(run(sync_client.wait_for_task, 1, 5))
    cancel = await run(lambda: sync_client.cancel_tasks(uids=[1]))
    await service.scheduler.tick()
    assert ((await waiter).status, (await waiter).canceled_by) == (TaskStatus.CANCELED, cancel.task_uid)
    deletion = await run(lambda: sync_client.delete_tasks(statuses=["canceled", "succeeded"]))
    await service.scheduler.tick()
    assert (await run(sync_client.get_task, deletion.task_uid)).details["deletedTasks"] == 3
    with pytest.raises(TaskHubError) as caught:
        await run(sync_client.get_task, 1)
    assert caught.value.code == "task_not_found"
    with pytest.raises(TaskTimeoutError):
        await run(sync_client.wait_for_task, 2, 0.1)


# -- models ---------------------------------------------------------------------


def test_durations_render_as_meilisearch_writes_them():
    assert [
        format_duration(d)
        for d in (
            timedelta(0),
            timedelta(seconds=1),
            timedelta(microseconds=6034),
            timedelta(milliseconds=500),
            timedelta(days=1, seconds=2),
            timedelta(days=2),
            timedelta(seconds=3700, microseconds=10),
        )
    ] == ["PT0S", "PT1S", "PT0.006034S", "PT0.500S", "P1DT2S", "P2D", "PT3700.000010S"]
