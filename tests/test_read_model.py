"""The index as a read model: it follows the change log, so another process's commits show without a restart.

The other process writes through the storage contract, as a second server on the same database
would (one `taskhub serve` per SQLite file is the rule, so it is not a second server here).
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import time

import grpc
import pytest

from taskhub.server import app
from taskhub.server.model import TaskQuery, TaskType
from taskhub.server.storage.postgres.database import PostgresStorage, is_postgres_url
from taskhub.server.storage.sqlite.database import SqliteStorage
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc

SPAWN = multiprocessing.get_context("spawn")


def _open(address: str) -> SqliteStorage | PostgresStorage:
    """The store at `address`, as another process on the database opens it."""
    return PostgresStorage(address) if is_postgres_url(address) else SqliteStorage(address)


# `--task-index sql` reads a SQLite file: on PostgreSQL only the in-memory index runs.
FINDERS = ["memory", pytest.param("sql", marks=pytest.mark.sqlite_only(reason="--task-index sql is SQLite's"))]


def _enqueue_elsewhere(path: str, index_uid: str, count: int) -> None:
    storage = _open(path)
    with storage.transaction() as tx:
        tx.tasks.insert([(index_uid, TaskType.DOCUMENT_ADDITION_OR_UPDATE, {"receivedDocuments": 1}, None)] * count, 1)
    storage.close()


def elsewhere(path: str, index_uid: str, count: int) -> None:
    process = SPAWN.Process(target=_enqueue_elsewhere, args=(path, index_uid, count))
    process.start()
    process.join(30)
    assert process.exitcode == 0


async def total(stub, *index_uids: str) -> int:
    only = task_pb2.IndexUidSet(index_uids=index_uids) if index_uids else None
    return (await stub.ListTasks(pb.ListTasksRequest(filter=task_pb2.TaskFilter(index_uids=only)))).total


@pytest.mark.parametrize("task_index", FINDERS)
async def test_another_process_commit_shows_in_totals_watches_and_leases_within_a_second(config, task_index):
    service = await app.start(dataclasses.replace(config, task_index=task_index))  # the background follower runs
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            await stub.EnqueueTask(pb.EnqueueTaskRequest(index_uid="here", type=task_pb2.TASK_TYPE_INDEX_CREATION))
            watch = stub.WatchTasks(
                pb.WatchTasksRequest(filter=task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["there"])))
            )
            await watch.initial_metadata()
            await asyncio.to_thread(elsewhere, config.db, "there", 3)
            committed = time.monotonic()
            while await total(stub, "there") != 3:
                assert time.monotonic() - committed < 1.0, "another process's commit did not show within a second"
                await asyncio.sleep(0.02)
            assert await total(stub) == 4
            # The watch hub follows the same log: the other process's changes arrive, in order.
            events = [await watch.read() for _ in range(3)]
            assert [(e.task.uid, e.sequence) for e in events] == [(1, 2), (2, 3), (3, 4)]
            watch.cancel()
            # And the rules decide on them: a worker of `there` leases its first task.
            lease = await service.scheduler.lease(worker="w", index_uids=frozenset({"there"}), max_tasks=1)
            assert [t.uid for t in lease.tasks] == [1]
            # This process's next commit comes after them, in sequence.
            task = await service.scheduler.enqueue(TaskType.INDEX_CREATION, "here-too", None)
            assert (task.uid, task.seq) == (4, 6)
    finally:
        await service.stop(0)


async def test_a_commit_made_while_the_server_was_away_is_caught_up_at_start(config):
    service = await app.start(config, background=False)
    await service.stop(0)
    await asyncio.to_thread(elsewhere, config.db, "late", 2)
    service = await app.start(config, background=False)
    try:
        assert (await service.scheduler.list_tasks(TaskQuery(index_uids=frozenset({"late"})))).total == 2
    finally:
        await service.stop(0)


def _enqueue_delayed_elsewhere(path: str) -> None:
    storage = _open(path)
    now = time.time_ns() // 1_000
    with storage.transaction() as tx:
        tx.tasks.insert([("later", TaskType.INDEX_CREATION, None, {"runAt": now + 500_000})], now)
    storage.close()


@pytest.mark.parametrize("task_index", FINDERS)
async def test_a_task_delayed_by_another_process_is_leased_when_due_and_not_before(config, task_index):
    service = await app.start(dataclasses.replace(config, task_index=task_index))  # the wall clock, following
    try:
        # A lease call waiting already learns of the task from the log, sleeps until its runAt, then takes it.
        leasing = asyncio.create_task(service.scheduler.lease(worker="w", wait=20.0))
        process = SPAWN.Process(target=_enqueue_delayed_elsewhere, args=(config.db,))
        process.start()
        await asyncio.to_thread(process.join, 30)
        assert process.exitcode == 0
        [task] = (await leasing).tasks
        late = task.started_at - task.extra["runAt"]
        assert task.uid == 0 and 0 <= late <= 100_000, f"leased {late} µs after its runAt"
    finally:
        await service.stop(0)
