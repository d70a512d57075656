"""A server on PostgreSQL (`--db postgresql://...`): it serves, keeps what it stored across a restart, and refuses
what it cannot do there (the SQL finder, a SQLite snapshot). Several servers on one database: tests/test_replicas.py."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from helpers import T, enqueue
from taskhub.server import app
from taskhub.server.lock import DatabaseLocked
from taskhub.v1 import task_service_pb2 as pb, task_service_pb2_grpc, worker_service_pb2 as wpb, worker_service_pb2_grpc

_databases = iter(range(1_000_000))


@pytest.fixture
def pg_config(config, postgres_cluster):
    db = postgres_cluster.create_database(f"server_{next(_databases)}")
    return dataclasses.replace(config, db=db)


async def test_a_task_runs_through_a_worker_and_outlives_a_restart(pg_config, clock):
    service = await app.start(pg_config, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
            assert [await enqueue(stub, received_documents=n) for n in (1, 2)] == [0, 1]
            leased = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w"))
            assert [t.uid for t in leased.tasks] == [0, 1]  # one batch of document additions
            await workers.CompleteTasks(
                wpb.CompleteTasksRequest(
                    token=leased.lease.token, outcomes=[wpb.TaskOutcome(uid=0), wpb.TaskOutcome(uid=1)]
                )
            )
    finally:
        await service.stop(0)
    service = await app.start(pg_config, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            listed = await stub.ListTasks(pb.ListTasksRequest())
            assert [(t.uid, t.status) for t in listed.results] == [
                (1, T.TASK_STATUS_SUCCEEDED),
                (0, T.TASK_STATUS_SUCCEEDED),
            ]
            assert await enqueue(stub) == 2
    finally:
        await service.stop(0)


async def test_a_second_server_serves_the_same_database_beside_the_first(pg_config, clock):
    first = await app.start(dataclasses.replace(pg_config, replica_name="a"), background=False, clock=clock)
    try:
        second = await app.start(dataclasses.replace(pg_config, replica_name="b"), background=False, clock=clock)
        try:
            assert (first.replica.name, first.replica.leads) == ("a", True)
            assert (second.replica.name, second.replica.leads, second.replica.term) == ("b", False, 0)
        finally:
            await second.stop(0)
    finally:
        await first.stop(0)


async def test_a_server_that_serves_the_database_alone_and_replicas_refuse_each_other(pg_config, clock):
    import psycopg

    from taskhub.server.storage.postgres.lock import SERVER_LOCK

    with_password = pg_config.db.replace("postgres@", "postgres:s3cret@")  # trust auth: any password is taken
    # What a server of the version before replicas holds while it runs: the server lock, exclusively.
    with psycopg.connect(pg_config.db, autocommit=True) as older:
        older.execute("SELECT pg_advisory_lock(%s)", (SERVER_LOCK,))
        with pytest.raises(DatabaseLocked) as refused:
            await app.start(dataclasses.replace(pg_config, db=with_password), background=False, clock=clock)
        message = str(refused.value)
        assert "serves" in message and pg_config.db.rsplit("/", 1)[1] in message
        assert "s3cret" not in message and ":***@" in message
    # Once it stops, replicas start.
    service = await app.start(pg_config, background=False, clock=clock)
    try:
        with psycopg.connect(pg_config.db, autocommit=True) as older:
            assert older.execute("SELECT pg_try_advisory_lock(%s)", (SERVER_LOCK,)).fetchone()[0] is False
    finally:
        await service.stop(0)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"task_index": "sql"}, "--task-index sql answers from a SQLite file"),
        ({"import_snapshot": "/nonexistent.snapshot"}, "restore it with pg_restore"),
    ],
)
async def test_what_postgresql_cannot_do_is_refused_before_anything_opens(pg_config, clock, change, words):
    with pytest.raises(ValueError, match=words):
        await app.start(dataclasses.replace(pg_config, **change), background=False, clock=clock)


async def test_a_server_whose_connections_were_ended_opens_new_ones(pg_config, clock):
    import psycopg

    service = await app.start(pg_config, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            assert await enqueue(stub) == 0
            # What a database restart or an operator does to a server's connections.
            with psycopg.connect(pg_config.db, autocommit=True) as admin:
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()[0]
            assert ended >= 2  # the writer and the readers at least
            assert await enqueue(stub) == 1
            assert (await stub.GetTask(pb.GetTaskRequest(uid=0))).task.uid == 0
            assert (await stub.ListTasks(pb.ListTasksRequest())).total == 2
    finally:
        await service.stop(0)
