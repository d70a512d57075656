"""A start reads the index's saved state and the changes since, not every task, whenever it can.

A clean stop saves the index beside the database (`<db>.index`); a start takes it when it is of the
same history and not ahead of the database, then follows the change log from its sequence number.
When it cannot (no file, another history, the log pruned past it, a damaged file) the index is
built from the rows, as before, and the answers are the same. Which way it went shows in the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from helpers import finish, start
from taskhub.server import app
from taskhub.server.model import TaskQuery, TaskStatus, TaskType
from taskhub.server.rules.scheduler import Scheduler
from taskhub.server.storage.sqlite.database import SqliteStorage
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc

# The index's state is saved in a file beside the SQLite database; on PostgreSQL it is built at each start.
pytestmark = pytest.mark.sqlite_only(reason="the saved index is a file beside a SQLite database")

BUILT = "building the index from"
ENQUEUED = frozenset({TaskStatus.ENQUEUED})


async def totals(scheduler: Scheduler) -> tuple[int, int, int]:
    """All tasks, enqueued ones, and the `movies` index's."""
    return (
        (await scheduler.list_tasks(TaskQuery())).total,
        (await scheduler.list_tasks(TaskQuery(statuses=ENQUEUED))).total,
        (await scheduler.list_tasks(TaskQuery(index_uids=frozenset({"movies"})))).total,
    )


async def fill(service, count: int, index_uid: str = "movies") -> None:
    await service.scheduler.enqueue_many(
        [(TaskType.DOCUMENT_ADDITION_OR_UPDATE, index_uid, {"receivedDocuments": 1})] * count
    )


def built(caplog) -> bool:
    return any(BUILT in record.getMessage() for record in caplog.records)


@pytest.fixture
def config(config):
    """The in-memory finder, whatever TASKHUB_TEST_TASK_INDEX says: it is the one saved between starts."""
    return dataclasses.replace(config, task_index="memory")


@pytest.fixture(autouse=True)
def every_log_line(caplog):
    caplog.set_level(logging.DEBUG)


async def test_a_clean_stop_saves_the_index_and_the_next_start_reads_it(config, clock, caplog):
    service = await app.start(config, background=False, clock=clock)
    await fill(service, 5)
    await start(service, 0)
    await finish(service, 0)
    before = await totals(service.scheduler)
    await service.stop(0)
    assert os.path.exists(app.index_path(config.db))
    caplog.clear()
    service = await app.start(config, background=False, clock=clock)
    try:
        assert not built(caplog)
        assert await totals(service.scheduler) == before == (5, 4, 5)
        # It goes on from there: the next lease, the next enqueue.
        lease = await service.scheduler.lease(worker="w", max_tasks=1)
        assert [t.uid for t in lease.tasks] == [1]
        assert (await service.scheduler.enqueue(TaskType.INDEX_CREATION, "books", None)).uid == 5
    finally:
        await service.stop(0)


async def test_changes_after_the_saved_state_are_caught_up_from_the_log(config, clock, caplog):
    service = await app.start(config, background=False, clock=clock)
    await fill(service, 3)
    await service.stop(0)
    # Committed while no server ran, as another server on the database would: the saved index misses them.
    storage = SqliteStorage(config.db)
    with storage.transaction() as tx:
        tx.tasks.insert([("books", TaskType.INDEX_CREATION, None, None)] * 2, clock())
    storage.close()
    caplog.clear()
    service = await app.start(config, background=False, clock=clock)
    try:
        assert not built(caplog)
        assert await totals(service.scheduler) == (5, 5, 3)
    finally:
        await service.stop(0)


@pytest.mark.parametrize("spoil", ["pruned", "other history", "ahead", "damaged"])
async def test_a_saved_state_that_does_not_fit_is_not_used(config, clock, caplog, tmp_path, spoil):
    service = await app.start(config, background=False, clock=clock)
    await fill(service, 3)
    await service.stop(0)
    index = app.index_path(config.db)
    if spoil == "ahead":  # the database is an older copy than the saved index
        copy = tmp_path / "older.db"
        storage = SqliteStorage(config.db)
        storage.backup(copy)
        storage.close()
        service = await app.start(config, background=False, clock=clock)
        await fill(service, 2)
        await service.stop(0)
        os.replace(copy, config.db)
    else:
        storage = SqliteStorage(config.db)
        if spoil == "pruned":
            with storage.transaction() as tx:
                tx.tasks.insert([("books", TaskType.INDEX_CREATION, None, None)] * 2, clock())
            storage.log.prune_changes(0)
        elif spoil == "other history":  # a dump loaded into a fresh database at the same path
            with storage.transaction() as tx:
                for uid in range(3):
                    tx.tasks.delete([uid], frozenset(TaskStatus))
            with storage.transaction() as tx:
                tx.tasks.load([], 0)
        storage.close()
        if spoil == "damaged":
            with open(index, "r+b") as file:
                file.seek(os.path.getsize(index) // 2)
                file.write(b"\xff\xff\xff\xff")
    expected = {"pruned": (5, 5, 3), "other history": (0, 0, 0), "ahead": (3, 3, 3), "damaged": (3, 3, 3)}[spoil]
    caplog.clear()
    service = await app.start(config, background=False, clock=clock)
    try:
        assert built(caplog)
        assert await totals(service.scheduler) == expected
    finally:
        await service.stop(0)


async def test_the_sql_finder_saves_nothing(config, clock):
    service = await app.start(dataclasses.replace(config, task_index="sql"), background=False, clock=clock)
    await fill(service, 2)
    assert await totals(service.scheduler) == (2, 2, 2)
    await service.stop(0)
    assert not os.path.exists(app.index_path(config.db))


@pytest.mark.slow
async def test_after_a_sigkill_the_start_catches_up_from_the_last_saved_state(config, clock, tmp_path, caplog):
    service = await app.start(config, background=False, clock=clock)
    await fill(service, 3)
    await service.stop(0)  # saved at 3 tasks
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            config.db,
            "--grpc-listen",
            "127.0.0.1:0",
            "--no-http",
            "--log-level",
            "INFO",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        target = None
        for line in server.stderr:
            if "gRPC listening on" in line:
                target = line.rsplit(" ", 1)[-1].strip()
                break
        assert target is not None, "the server did not start"
        async with grpc.aio.insecure_channel(target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            for _ in range(4):
                await stub.EnqueueTask(pb.EnqueueTaskRequest(index_uid="books", type=task_pb2.TASK_TYPE_INDEX_CREATION))
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    caplog.clear()
    started = time.monotonic()
    service = await app.start(config, background=False, clock=clock)
    try:
        assert not built(caplog), "the saved state and the log should have sufficed"
        assert await totals(service.scheduler) == (7, 7, 3)
        assert time.monotonic() - started < 5
    finally:
        await service.stop(0)


async def test_the_index_is_saved_in_the_background_and_pruning_never_drops_what_it_lacks(tmp_path, clock, caplog):
    from taskhub.server.index.memory import MemoryFinder

    db = str(tmp_path / "t.db")

    def scheduler(storage: SqliteStorage) -> Scheduler:
        return Scheduler(
            storage,
            MemoryFinder(snapshot_path=app.index_path(db)),
            clock=clock,
            snapshots_dir=str(tmp_path),
            dumps_dir=str(tmp_path),
            watch_retention=3,
            checkpoint_every=0,
            checkpoint_changes=5,
        )

    storage = SqliteStorage(db)
    first = scheduler(storage)
    await first.start(background=False)
    await first.enqueue_many([(TaskType.INDEX_CREATION, f"i{n}", None) for n in range(6)])
    await first.tick()  # six changes since the start: a save begins in the background
    while first._checkpointing is not None:
        await asyncio.sleep(0.01)
    assert os.path.exists(app.index_path(db))
    await first.enqueue_many([(TaskType.INDEX_CREATION, f"j{n}", None) for n in range(4)])
    clock.now += 11_000_000  # the log is pruned every ten seconds
    await first.tick()
    # A crash: no save at stop (the store thread just ends).
    first.units.shutdown()
    storage.close()
    caplog.clear()
    storage = SqliteStorage(db)
    second = scheduler(storage)
    await second.start(background=False)
    try:
        assert not built(caplog), "pruning dropped the changes since the saved index"
        assert await totals(second) == (10, 10, 0)
    finally:
        await second.stop()
        storage.close()
