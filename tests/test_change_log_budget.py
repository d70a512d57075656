"""The change log's own budget: a full queue empties by deleting tasks, and resumes stay gapless or are refused.

Big (~20 KB) settings tasks fill a small queue; the change log must never be what
keeps it full, and pruning it must never leave a resuming watcher a silent gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import grpc
import pytest
from google.protobuf import struct_pb2

from helpers import T, error_of
from taskhub.metadata import watch_cursor
from taskhub.server import app
from taskhub.server.cli import serve
from taskhub.server.config import Config, parse_size, watch_retention_bytes
from taskhub.server.model import TaskType
from taskhub.server.storage.sqlite.database import SqliteStorage as Store
from taskhub.server.storage.sqlite.schema import SCHEMA_VERSION
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc

# A settings object of about 20 KB, as a big `rankingRules` list would be.
BIG_SETTINGS = {"rankingRules": [f"attribute_{i}:asc" + "x" * 80 for i in range(200)]}
TERMINAL = (T.TASK_STATUS_SUCCEEDED, T.TASK_STATUS_FAILED, T.TASK_STATUS_CANCELED)


async def enqueue_settings(stub) -> int:
    settings = struct_pb2.Struct()
    settings.update(BIG_SETTINGS)
    details = task_pb2.TaskDetails(settings_update=task_pb2.SettingsUpdateDetails(settings=settings))
    request = pb.EnqueueTaskRequest(type=T.TASK_TYPE_SETTINGS_UPDATE, index_uid="movies", details=details)
    return (await stub.EnqueueTask(request)).task.task_uid


async def fill(stub) -> int:
    """Enqueues big tasks until the queue is full; answers how many it took."""
    stored = 0
    while True:
        try:
            await enqueue_settings(stub)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            return stored
        stored += 1
        assert stored < 10_000, "the queue never filled"


async def finished(stub, uid: int) -> task_pb2.Task:
    """Waits for the background scheduler to finish a server-run task."""
    for _ in range(500):
        task = (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task
        if task.status in TERMINAL:
            return task
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {uid} did not finish")


def watch(stub, after: int, **filter_fields):
    return stub.WatchTasks(pb.WatchTasksRequest(filter=task_pb2.TaskFilter(**filter_fields), after=after))


async def read(stream, count: int) -> list[pb.WatchTasksResponse]:
    return [await asyncio.wait_for(stream.read(), timeout=5) for _ in range(count)]


def pages(path) -> tuple[int, int]:
    """The database's (page count, free pages)."""
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA page_count").fetchone()[0], conn.execute("PRAGMA freelist_count").fetchone()[0]


async def empty_a_full_queue(stub) -> tuple[int, int, int]:
    """Fills the queue, cancels every task, deletes them all; answers (how many, cursor before the deletion ran,
    the deletion's uid)."""
    stored = await fill(stub)
    assert stored > 10
    everything = task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[T.TASK_STATUS_ENQUEUED]))
    cancelation = (await stub.CancelTasks(pb.CancelTasksRequest(filter=everything))).task.task_uid
    assert (await finished(stub, cancelation)).details.task_cancelation.canceled_tasks == stored
    # Where a watcher that saw everything up to the cancelation would resume from.
    quiet = stub.WatchTasks(pb.WatchTasksRequest())
    cursor = watch_cursor(await asyncio.wait_for(quiet.initial_metadata(), 5))
    quiet.cancel()
    deletion = (
        await stub.DeleteTasks(
            pb.DeleteTasksRequest(
                filter=task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[T.TASK_STATUS_CANCELED]))
            )
        )
    ).task.task_uid
    assert (await finished(stub, deletion)).details.task_deletion.deleted_tasks == stored
    return stored, cursor, deletion


@pytest.mark.sqlite_only(reason="counts the SQLite file's pages; test_full_and_cleanup.py empties a full queue on both")
async def test_a_full_queue_of_big_tasks_empties_by_deleting_them_without_a_restart(config):
    service = await app.start(dataclasses.replace(config, max_task_db_size="4MiB"))  # the real scheduler loop
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            stored, _, _ = await empty_a_full_queue(stub)
            page_count, _ = pages(config.db)
            assert (await stub.ListTasks(pb.ListTasksRequest())).total == 2  # the cancelation and the deletion
            # A small task fits again: no restart, no VACUUM (the file never shrank).
            request = pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="tiny")
            assert (await stub.EnqueueTask(request)).task.task_uid == stored + 2
            # And so do big ones again, about as many as the first time.
            assert await fill(stub) >= stored // 2
            assert pages(config.db)[0] >= page_count
    finally:
        await service.stop(0)


async def test_a_cursor_pruned_by_the_byte_budget_is_refused(config, clock):
    service = await app.start(dataclasses.replace(config, watch_retention_size="64KiB"), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            for _ in range(10):  # 10 changes of ~20 KB: only the newest 3 fit in 64 KiB
                await enqueue_settings(stub)
            clock.now += 20_000_000
            await service.scheduler.tick()
            code, reason, message = await error_of(watch(stub, after=0).read())
            assert (code, reason) == (grpc.StatusCode.OUT_OF_RANGE, "invalid_watch_cursor")
            assert message.startswith("Sequence number `0` is older than the kept history, which starts at `8`")
            # The kept history is a gapless suffix: a cursor at its edge resumes with every kept change.
            assert [e.sequence for e in await read(watch(stub, after=7), 3)] == [8, 9, 10]
    finally:
        await service.stop(0)


async def test_a_resume_from_before_the_deletion_that_emptied_a_full_queue_is_gapless(config):
    service = await app.start(dataclasses.replace(config, max_task_db_size="4MiB"))
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            stored, cursor, deletion = await empty_a_full_queue(stub)
            request = pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="tiny")
            small = (await stub.EnqueueTask(request)).task.task_uid  # a queue this full prunes the log first
            seen = await read(watch(stub, after=cursor), stored + 4)
            # Every change since the cursor, once, in order: the deletion enqueued and started, each task it
            # deleted, the deletion succeeded, then the small task.
            assert [e.sequence for e in seen] == list(range(cursor + 1, cursor + stored + 5))
            assert [(e.task.uid, e.task.status, e.deleted) for e in seen] == [
                (deletion, T.TASK_STATUS_ENQUEUED, False),
                (deletion, T.TASK_STATUS_PROCESSING, False),
                *((uid, T.TASK_STATUS_CANCELED, True) for uid in range(stored)),
                (deletion, T.TASK_STATUS_SUCCEEDED, False),
                (small, T.TASK_STATUS_ENQUEUED, False),
            ]
    finally:
        await service.stop(0)


def test_a_version_2_database_counts_its_change_log_and_prunes_it_by_bytes(tmp_path):
    path = tmp_path / "v2.db"
    store = Store(path)
    with store.transaction() as tx:
        tx.tasks.insert([("movies", TaskType.SETTINGS_UPDATE, BIG_SETTINGS, None)] * 5, 1)
    logged = store.log.change_bytes()
    store.conn.execute("DELETE FROM meta WHERE key = 'change_bytes'")  # what version 2 had
    store.conn.execute("PRAGMA user_version=2")
    store.close()

    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.log.change_bytes() == logged > 5 * 20_000
    # Under the count budget but over the byte budget: the oldest go, until the rest fit.
    assert store.log.prune_changes(100, logged * 2 // 5) == 3
    assert (store.log.oldest_change(), store.log.change_bytes()) == (4, logged * 2 // 5)
    assert store.log.prune_changes(100, 0) == 2 and store.log.change_bytes() == 0
    store.close()


async def test_canceling_a_full_queue_fits_under_sqlites_hard_cap(config, monkeypatch):
    # A cancelation logs each canceled task's new state: canceling a full queue of big tasks logs about as
    # much again as the queue holds. The fixed headroom, scaled down to this queue, is far less than that.
    monkeypatch.setattr(app, "DB_HEADROOM", 256 * 1024)
    service = await app.start(dataclasses.replace(config, max_task_db_size="4MiB"))
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            stored, _, _ = await empty_a_full_queue(stub)
            assert (await stub.ListTasks(pb.ListTasksRequest())).total == 2
    finally:
        await service.stop(0)


def test_the_byte_budget_is_a_flag_with_an_env_twin_and_a_tenth_of_the_limit_by_default(monkeypatch):
    def configured(*flags: str) -> Config:
        # The real `taskhub serve` command's parsing, without running it.
        return Config(**serve.make_context("serve", list(flags)).params)

    assert watch_retention_bytes(configured()) == parse_size("10GiB") // 10
    assert watch_retention_bytes(configured("--max-task-db-size", "500MiB")) == 50 * 2**20
    monkeypatch.setenv("TASKHUB_WATCH_RETENTION_SIZE", "3MiB")
    assert watch_retention_bytes(configured()) == 3 * 2**20
    assert watch_retention_bytes(configured("--watch-retention-size", "64KiB")) == 64 * 2**10
