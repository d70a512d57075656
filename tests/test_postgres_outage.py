"""PostgreSQL goes away and comes back while a server serves: `/health` says so (503, then 200), calls meanwhile
fail as UNAVAILABLE (never INTERNAL nor UNKNOWN), the server reconnects by itself, and nothing acknowledged is lost.

Each test stops and starts a throwaway cluster of this module's own, so the session's cluster is never touched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import time

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

import postgres_cluster as clusters
from conftest import gateway_client
from taskhub.server import app
from taskhub.server.config import Config
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(postgres_cluster):
    """A cluster of this module's own (the session's says PostgreSQL is there, or skips/fails as it should)."""
    running = clusters.start()
    yield running
    running.stop()


@pytest.fixture
def settings(cluster, tmp_path):
    name = f"outage_{secrets.token_hex(4)}"
    db = cluster.create_database(name)
    yield Config(db=db, grpc_listen="127.0.0.1:0", no_http=True, snapshots_dir=str(tmp_path), grace_seconds=0.5)
    cluster.drop_database(name)


async def until(check, what: str, limit: float = 30.0):
    """Polls `check()` (a coroutine function) until it answers something true; fails naming `what` past `limit`."""
    deadline = time.monotonic() + limit
    while True:
        answer = await check()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"never {what}"
        await asyncio.sleep(0.1)


async def test_health_is_503_while_postgresql_is_down_and_200_once_it_is_back(cluster, settings, caplog):
    service = await app.start(settings, background=False)
    try:
        async with (
            gateway_client(service.grpc_target) as http,
            grpc.aio.insecure_channel(service.grpc_target) as channel,
        ):
            health = health_pb2_grpc.HealthStub(channel)
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            assert (await http.get("/health")).status_code == 200
            # Enough tasks that a page of them is read on the read threads' connections, not on the loop's.
            many = [
                pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid=f"i{n}") for n in range(300)
            ]
            await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=many))
            await asyncio.to_thread(cluster.stop_server)
            try:

                async def unhealthy():
                    return (await http.get("/health")).status_code == 503

                await until(unhealthy, "503 while PostgreSQL is down")
                status = (await health.Check(health_pb2.HealthCheckRequest())).status
                assert status == health_pb2.HealthCheckResponse.NOT_SERVING
                for request in (pb.ListTasksRequest(), pb.ListTasksRequest(limit=300), pb.GetTaskRequest(uid=0)):
                    call = stub.GetTask if isinstance(request, pb.GetTaskRequest) else stub.ListTasks
                    with pytest.raises(grpc.aio.AioRpcError) as failed:
                        await call(request)
                    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, request
                assert (await http.get("/health")).json()["code"] == "unavailable"
                assert re.search(r"the database cannot be reached \(\w.+\): health is NOT_SERVING", caplog.text)
            finally:
                await asyncio.to_thread(cluster.start_server)

            async def healthy():
                return (await http.get("/health")).status_code == 200

            await until(healthy, "200 once PostgreSQL is back")
            assert "the database answers again" in caplog.text
            status = (await health.Check(health_pb2.HealthCheckRequest())).status
            assert status == health_pb2.HealthCheckResponse.SERVING
            request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="after")
            assert (await stub.EnqueueTask(request)).task.task_uid == 300
            assert len((await stub.ListTasks(pb.ListTasksRequest(limit=300))).results) == 300
            assert (await stub.GetTask(pb.GetTaskRequest(uid=0))).task.uid == 0
    finally:
        await service.stop(0)


class Tally:
    """What the clients saw: acknowledged enqueues and completions, and the status codes of the failed calls."""

    def __init__(self) -> None:
        self.enqueued: set[int] = set()
        self.completed: set[int] = set()
        self.codes: dict[grpc.StatusCode, int] = {}
        self.messages: set[str] = set()

    def failed(self, error: grpc.aio.AioRpcError) -> None:
        self.codes[error.code()] = self.codes.get(error.code(), 0) + 1
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            self.messages.add(f"{error.code()}: {error.details()}")


async def producer(stub, tally: Tally, stop: asyncio.Event, name: str) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        try:
            if n % 3:
                request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid=f"{name}-{n}")
                tally.enqueued.add((await stub.EnqueueTask(request, timeout=10)).task.task_uid)
            else:
                many = pb.EnqueueTasksRequest(
                    tasks=[
                        pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid=f"{name}-{n}-{i}")
                        for i in range(5)
                    ]
                )
                tally.enqueued.update(t.task_uid for t in (await stub.EnqueueTasks(many, timeout=10)).tasks)
        except grpc.aio.AioRpcError as error:
            tally.failed(error)
            await asyncio.sleep(0.05)


async def reader(stub, tally: Tally, stop: asyncio.Event) -> None:
    """Reads as a dashboard does: a task by uid (a point read) and pages of the list."""
    while not stop.is_set():
        try:
            if tally.enqueued:
                uid = max(tally.enqueued)
                assert (await stub.GetTask(pb.GetTaskRequest(uid=uid), timeout=10)).task.uid == uid
            await stub.ListTasks(pb.ListTasksRequest(limit=200), timeout=10)
        except grpc.aio.AioRpcError as error:
            tally.failed(error)
        await asyncio.sleep(0.02)


async def worker(workers, tally: Tally, stop: asyncio.Event, name: str) -> None:
    while not stop.is_set():
        try:
            leased = await workers.LeaseTasks(
                wpb.LeaseTasksRequest(worker=name, wait=duration_pb2.Duration(nanos=200_000_000), max_tasks=10),
                timeout=10,
            )
            if not leased.tasks:
                continue
            await workers.CompleteTasks(
                wpb.CompleteTasksRequest(
                    token=leased.lease.token, outcomes=[wpb.TaskOutcome(uid=t.uid) for t in leased.tasks]
                ),
                timeout=10,
            )
            tally.completed.update(t.uid for t in leased.tasks)
        except grpc.aio.AioRpcError as error:
            tally.failed(error)
            await asyncio.sleep(0.05)


async def test_a_postgresql_restart_under_load_costs_unavailable_calls_and_loses_nothing_acknowledged(
    cluster, settings
):
    service = await app.start(settings)  # the real background loops: follower, lease expiry, cleanup
    tally = Tally()
    stop = asyncio.Event()
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
            clients = [asyncio.create_task(producer(stub, tally, stop, f"p{i}")) for i in range(3)]
            clients += [asyncio.create_task(worker(workers, tally, stop, f"w{i}")) for i in range(2)]
            clients.append(asyncio.create_task(reader(stub, tally, stop)))
            await until(lambda: asyncio.sleep(0, len(tally.completed) >= 20), "tasks completed before the restart")
            before = len(tally.enqueued)
            for mode in ("fast", "immediate"):  # as a restart ends connections, then as a crash
                # Off the loop: the server shares it, and must go on answering (UNAVAILABLE) meanwhile.
                await asyncio.to_thread(cluster.stop_server, mode)
                await asyncio.sleep(1.5)
                await asyncio.to_thread(cluster.start_server)
                acknowledged = len(tally.enqueued)
                await until(
                    lambda acknowledged=acknowledged: asyncio.sleep(0, len(tally.enqueued) > acknowledged + 20),
                    f"enqueues acknowledged again after the {mode} stop",
                )
            done = len(tally.completed)
            await until(lambda: asyncio.sleep(0, len(tally.completed) > done + 20), "completions after the restarts")
            stop.set()
            await asyncio.gather(*clients)
            assert len(tally.enqueued) > before
            assert tally.codes.get(grpc.StatusCode.UNAVAILABLE, 0) > 0  # the outage was seen by the clients
            assert set(tally.codes) == {grpc.StatusCode.UNAVAILABLE}, tally.messages
            # Every acknowledged task is stored, once; every acknowledged completion holds.
            found: dict[int, int] = {}
            page = await stub.ListTasks(pb.ListTasksRequest(limit=1000))
            while True:
                found.update((t.uid, t.status) for t in page.results)
                if not page.HasField("next"):
                    break
                page = await stub.ListTasks(pb.ListTasksRequest(limit=1000, **{"from": page.next}))
            assert tally.enqueued <= set(found)
            assert {uid for uid in tally.completed if found[uid] != task_pb2.TASK_STATUS_SUCCEEDED} == set()
    finally:
        stop.set()
        await service.stop(0)


async def test_a_server_started_while_postgresql_is_down_fails_clearly(cluster, settings):
    cluster.stop_server()
    try:
        from taskhub.server.storage.contract import StorageUnavailable

        with pytest.raises(StorageUnavailable) as refused:
            await app.start(dataclasses.replace(settings), background=False)
        assert "cannot connect to" in refused.value.detail
    finally:
        cluster.start_server()
