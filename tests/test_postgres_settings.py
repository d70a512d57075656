"""The database settings: `--db-statement-timeout` cuts a statement that waits too long (the call fails as
UNAVAILABLE and the next one serves), `--db-pool-size` is how many read connections long reads spread over."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets

import grpc
import pytest

from helpers import enqueue
from taskhub.server import app
from taskhub.server.config import Config, statement_timeout_ms
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc


@pytest.fixture
def settings(postgres_cluster, tmp_path):
    name = f"settings_{secrets.token_hex(4)}"
    db = postgres_cluster.create_database(name)
    yield Config(db=db, grpc_listen="127.0.0.1:0", no_http=True, snapshots_dir=str(tmp_path), grace_seconds=0.5)
    postgres_cluster.drop_database(name)


async def test_a_statement_past_the_timeout_fails_its_call_as_unavailable_and_the_next_serves(settings):
    import psycopg

    service = await app.start(dataclasses.replace(settings, db_statement_timeout="300ms"), background=False)
    try:
        assert service.store.conn.execute("SHOW statement_timeout").fetchone()[0] == "300ms"
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            assert await enqueue(stub) == 0
            with psycopg.connect(settings.db) as admin:  # a transaction holding the table until the block ends
                admin.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await enqueue(stub)
                assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert await enqueue(stub) == 1
    finally:
        await service.stop(0)


async def test_long_reads_spread_over_the_pools_connections_and_no_more(settings):
    import psycopg

    service = await app.start(dataclasses.replace(settings, db_pool_size=3), background=False)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            many = [
                pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid=f"i{n}") for n in range(300)
            ]
            await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=many))
            with psycopg.connect(settings.db) as admin:  # every read of the table waits until the block ends
                admin.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
                # Pages past what is read on the loop: on the pool's threads, each with its connection.
                pages = [asyncio.ensure_future(stub.ListTasks(pb.ListTasksRequest(limit=300))) for _ in range(8)]
                waiting = 0
                for _ in range(300):
                    await asyncio.sleep(0.05)
                    waiting = await asyncio.to_thread(waiting_reads, settings.db)
                    if waiting >= 3:
                        break
                await asyncio.sleep(0.3)  # time for a fourth, were there one
                assert await asyncio.to_thread(waiting_reads, settings.db) == 3
            assert [len(page.results) for page in await asyncio.gather(*pages)] == [300] * 8
    finally:
        await service.stop(0)


def waiting_reads(url: str) -> int:
    """Statements on the database waiting for a lock."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"db_statement_timeout": "soon"}, "--db-statement-timeout"),
        ({"db_pool_size": 0}, "--db-pool-size is 1 or more"),
    ],
)
async def test_bad_settings_are_refused_naming_the_flag(settings, change, words):
    with pytest.raises(ValueError, match=words):
        await app.start(dataclasses.replace(settings, **change), background=False)


def test_the_statement_timeout_takes_durations():
    assert [
        statement_timeout_ms(Config(db_statement_timeout=text)) for text in ("0", "30s", "500ms", "2m", "1.5", "1h")
    ] == [0, 30_000, 500, 120_000, 1_500, 3_600_000]
