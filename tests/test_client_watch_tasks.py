"""`watch_tasks` of both clients: typed changes in commit order, `after=`, and resuming across restarts."""

from __future__ import annotations

import asyncio

import pytest

import helpers
from taskhub.client import AsyncTaskHubClient, TaskChange, TaskHubClient, TaskHubError, TaskStatus
from taskhub.server import app
from taskhub.server.storage.postgres.database import is_postgres_url
from test_client import FAST, free_port, until


@pytest.fixture
async def client(service):
    async with AsyncTaskHubClient(service.grpc_target, retry=FAST) as client:
        yield client


class Collector:
    """Runs an async watch in the background, keeping what it yields."""

    def __init__(self, changes) -> None:
        self.seen: list[TaskChange] = []
        self.task = asyncio.create_task(self._run(changes))

    async def _run(self, changes) -> None:
        async for change in changes:
            self.seen.append(change)

    async def count(self, n: int) -> list[TaskChange]:
        await until(lambda: len(self.seen) >= n or self.task.done())
        if self.task.done():
            self.task.result()  # raises what ended the watch
        return self.seen[:n]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def summary(changes: list[TaskChange]) -> list[tuple[int, int, str, bool]]:
    return [(c.sequence, c.task.uid, c.task.status.value, c.deleted) for c in changes]


async def test_matching_changes_arrive_typed_and_in_commit_order(client, service):
    movies = Collector(client.watch_tasks(index_uids="movies"))
    await until(lambda: service.scheduler.hub.watchers == 1)
    await client.enqueue("documentAdditionOrUpdate", "movies", {"receivedDocuments": 3})  # 1
    await client.enqueue("indexCreation", "books")  # 2
    await helpers.start(service, 0)  # 3
    await helpers.finish(service, 0, details={"indexedDocuments": 3})  # 4
    await client.delete_tasks(uids=[0])  # 5, then 6 and 7 when it runs
    await service.scheduler.tick()
    changes = await movies.count(4)
    assert summary(changes) == [
        (1, 0, "enqueued", False),
        (3, 0, "processing", False),
        (4, 0, "succeeded", False),
        (7, 0, "succeeded", True),
    ]
    assert changes[2].task.status == TaskStatus.SUCCEEDED and changes[2].task.duration is not None
    # A deletion carries the task's last state without its details and error.
    assert changes[3].to_dict() == {
        "sequence": 7,
        "deleted": True,
        "task": {**changes[2].task.to_dict(), "details": None, "error": None},
    }
    assert list(changes[0].to_dict()) == ["sequence", "deleted", "task"]
    await movies.stop()
    await until(lambda: service.scheduler.hub.watchers == 0)


async def test_after_resumes_with_every_later_change_once(client, service):
    for index in ("movies", "books", "movies"):
        await client.enqueue("indexCreation", index)
    await helpers.start(service, 1)
    resumed = Collector(client.watch_tasks(after=1))
    assert summary(await resumed.count(3)) == [
        (2, 1, "enqueued", False),
        (3, 2, "enqueued", False),
        (4, 1, "processing", False),
    ]
    await helpers.finish(service, 1)
    assert summary(await resumed.count(4))[3] == (5, 1, "succeeded", False)
    await resumed.stop()

    with pytest.raises(TaskHubError) as caught:
        await anext(client.watch_tasks(after=99))
    assert caught.value.code == "invalid_watch_cursor"
    with pytest.raises(TaskHubError) as caught:
        await anext(client.watch_tasks(statuses="doggo"))
    assert caught.value.code == "invalid_task_statuses"  # refused before anything is sent


async def test_a_server_restart_is_resumed_without_a_gap(config, clock):
    config.grpc_listen = f"127.0.0.1:{free_port()}"
    service = await app.start(config, background=False, clock=clock)
    try:
        async with AsyncTaskHubClient(service.grpc_target, retry=FAST) as client:
            await client.enqueue("indexCreation", "movies")  # 1
            await client.enqueue("indexCreation", "books")  # 2
            await helpers.start(service, 0)  # 3
            # One watch has seen a change before the restart, the other none at all.
            seen_one = Collector(client.watch_tasks(after=2))
            quiet = Collector(client.watch_tasks(index_uids="movies"))
            assert summary(await seen_one.count(1)) == [(3, 0, "processing", False)]
            await until(lambda: service.scheduler.hub.watchers == 2)
            await service.stop(0)
            # On SQLite the restart puts the processing task back in the queue (4) before anyone reconnects;
            # on PostgreSQL a start ends no lease (replicas: another may hold it), so the next change is 4.
            requeued = not is_postgres_url(config.db)
            service = await app.start(config, background=False, clock=clock)
            await until(lambda: service.scheduler.hub.watchers == 2)
            await helpers.start(service, 1)  # 5 (4 on PostgreSQL)
            if requeued:
                assert summary(await seen_one.count(3)) == [
                    (3, 0, "processing", False),
                    (4, 0, "enqueued", False),
                    (5, 1, "processing", False),
                ]
                assert summary(await quiet.count(1)) == [(4, 0, "enqueued", False)]
            else:
                assert summary(await seen_one.count(2)) == [(3, 0, "processing", False), (4, 1, "processing", False)]
                await client.enqueue("indexCreation", "movies")  # 5: task 2, the quiet watch's first change
                assert summary(await quiet.count(1)) == [(5, 2, "enqueued", False)]
            await seen_one.stop()
            await quiet.stop()
    finally:
        await service.stop(0)


async def test_the_sync_client_watches_and_frees_the_stream_when_left(service):
    def first_changes(count: int) -> list[TaskChange]:
        with TaskHubClient(service.grpc_target, retry=FAST) as client:
            changes = []
            for change in client.watch_tasks(types=["indexCreation"], after=0):
                changes.append(change)
                if len(changes) == count:
                    return changes

    async with AsyncTaskHubClient(service.grpc_target) as client:
        await client.enqueue("indexCreation", "movies")
        await client.enqueue("dumpCreation")
        await client.enqueue("indexCreation", "books")
    changes = await asyncio.to_thread(first_changes, 2)
    assert summary(changes) == [(1, 0, "enqueued", False), (3, 2, "enqueued", False)]
    assert changes[1].task.index_uid == "books"
    await until(lambda: service.scheduler.hub.watchers == 0)

    def refused() -> str:
        with TaskHubClient(service.grpc_target, retry=FAST) as client:
            with pytest.raises(TaskHubError) as caught:
                next(client.watch_tasks(after=42))
            return caught.value.code

    assert await asyncio.to_thread(refused) == "invalid_watch_cursor"


async def test_the_sync_client_resumes_across_a_restart_too(config, clock):
    config.grpc_listen = f"127.0.0.1:{free_port()}"
    service = await app.start(config, background=False, clock=clock)
    seen: list[TaskChange] = []

    def watch() -> None:
        with TaskHubClient(config.grpc_listen, retry=FAST) as client:
            for change in client.watch_tasks():
                seen.append(change)
                if len(seen) == 3:
                    return

    try:
        watcher = asyncio.create_task(asyncio.to_thread(watch))
        await until(lambda: service.scheduler.hub.watchers == 1)
        async with AsyncTaskHubClient(service.grpc_target) as client:
            await client.enqueue("indexCreation", "movies")  # 1
        await helpers.start(service, 0)  # 2
        await until(lambda: len(seen) == 2)
        await service.stop(0)
        service = await app.start(config, background=False, clock=clock)  # 3: task 0 back in the queue (SQLite)
        if is_postgres_url(config.db):  # a start ends no lease there: the third change is a new task
            async with AsyncTaskHubClient(service.grpc_target) as client:
                await client.enqueue("indexCreation", "books")  # 3: task 1
        await asyncio.wait_for(watcher, 10)
        third = (3, 1, "enqueued", False) if is_postgres_url(config.db) else (3, 0, "enqueued", False)
        assert summary(seen) == [(1, 0, "enqueued", False), (2, 0, "processing", False), third]
    finally:
        await service.stop(0)
