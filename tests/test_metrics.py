"""Prometheus metrics: scrapes parsed with prometheus-client's parser and checked against what was done.

Over gRPC (`MetricsService.GetMetrics`) against the service with the fake clock, which the tests move
to expire leases; over HTTP through the real gateway behind uvicorn, with a master key. The gauges
by status, type and index come from the in-memory index: with `--task-index sql` they are absent.
"""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import httpx
import pytest
from google.protobuf import duration_pb2
from prometheus_client.parser import text_string_to_metric_families

from conftest import MASTER_KEY
from helpers import enqueue, error_of
from taskhub.server import app
from taskhub.server.config import parse_size
from taskhub.server.rules.leasing import SECOND
from taskhub.server.storage.postgres.database import is_postgres_url
from taskhub.v1 import (
    errors_pb2,
    metrics_service_pb2 as mpb,
    metrics_service_pb2_grpc,
    task_pb2 as T,
    task_service_pb2 as pb,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)


def parse(text: str) -> dict[str, dict[frozenset, float]]:
    """Every sample of a scrape: name -> {frozenset of its labels -> value}."""
    samples: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value; a series never written is 0, as Prometheus reads an absent counter."""
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)


async def scrape(channel, metadata=()) -> dict:
    response = await metrics_service_pb2_grpc.MetricsServiceStub(channel).GetMetrics(
        mpb.GetMetricsRequest(), metadata=metadata
    )
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def lease(channel, *, max_tasks: int, seconds: int = 60) -> wpb.LeaseTasksResponse:
    return await worker_service_pb2_grpc.WorkerServiceStub(channel).LeaseTasks(
        wpb.LeaseTasksRequest(
            worker="metrics-test", max_tasks=max_tasks, lease_duration=duration_pb2.Duration(seconds=seconds)
        )
    )


def failure(uid: int, *, retryable: bool = False) -> wpb.TaskOutcome:
    return wpb.TaskOutcome(
        uid=uid,
        error=errors_pb2.TaskError(message="boom", code="handler_failed", type="internal", link=""),
        retryable=retryable,
    )


async def test_a_scrape_counts_what_happened(service, channel, stub, config, clock):
    worker = worker_service_pb2_grpc.WorkerServiceStub(channel)
    uids = [await enqueue(stub, "movies") for _ in range(5)] + [await enqueue(stub, "books") for _ in range(2)]
    await error_of(stub.GetTask(pb.GetTaskRequest(uid=999)))  # NOT_FOUND

    first = await lease(channel, max_tasks=2)
    assert [t.uid for t in first.tasks] == uids[:2]
    held = await scrape(channel)
    assert value(held, "taskhub_leases_active") == 1
    await worker.CompleteTasks(
        wpb.CompleteTasksRequest(token=first.lease.token, outcomes=[wpb.TaskOutcome(uid=uids[0]), failure(uids[1])])
    )
    # A lease left to expire: its tasks go back to the queue, an attempt spent.
    second = await lease(channel, max_tasks=3, seconds=1)
    assert [t.uid for t in second.tasks] == uids[2:5]
    clock.now += 2 * SECOND
    await service.scheduler.tick()

    samples = await scrape(channel)
    label = "documentAdditionOrUpdate"
    assert value(samples, "taskhub_tasks_enqueued_total", type=label) == 7
    assert value(samples, "taskhub_tasks_finished_total", type=label, status="succeeded") == 1
    assert value(samples, "taskhub_tasks_finished_total", type=label, status="failed") == 1
    assert value(samples, "taskhub_leases_granted_total") == 2
    assert value(samples, "taskhub_leases_expired_total") == 1
    assert value(samples, "taskhub_leases_active") == 0
    assert value(samples, "taskhub_tasks_stored") == 7
    assert value(samples, "taskhub_task_attempts_exhausted_total", reason="expired") == 0
    # Every unary call, by method and code; the scrapes themselves too.
    rpc = "taskhub_grpc_server_handling_seconds_count"
    assert value(samples, rpc, grpc_service="taskhub.v1.TaskService", grpc_method="EnqueueTask", grpc_code="OK") == 7
    assert value(samples, rpc, grpc_service="taskhub.v1.TaskService", grpc_method="GetTask", grpc_code="NOT_FOUND") == 1
    assert value(samples, rpc, grpc_service="taskhub.v1.WorkerService", grpc_method="LeaseTasks", grpc_code="OK") == 2
    assert value(samples, rpc, grpc_service="taskhub.v1.MetricsService", grpc_method="GetMetrics", grpc_code="OK") == 1
    # The units of work, with the group commits of the seven enqueues.
    assert value(samples, "taskhub_store_unit_seconds_count", unit="lease") == 2
    assert value(samples, "taskhub_store_unit_seconds_count", unit="expire") >= 1
    assert value(samples, "taskhub_store_group_commit_tasks_sum") == 7
    assert value(samples, "taskhub_db_limit_bytes") == parse_size(config.max_task_db_size)
    assert 0 < value(samples, "taskhub_db_used_bytes") < value(samples, "taskhub_db_limit_bytes")
    if config.task_index != "memory":
        assert "taskhub_tasks" not in samples and "taskhub_index_tasks" not in samples
        return
    assert value(samples, "taskhub_tasks", status="enqueued", type=label) == 5
    assert value(samples, "taskhub_tasks", status="succeeded", type=label) == 1
    assert value(samples, "taskhub_tasks", status="failed", type=label) == 1
    assert value(samples, "taskhub_tasks", status="processing", type=label) == 0
    assert value(samples, "taskhub_index_tasks", index="movies", status="enqueued") == 3
    assert value(samples, "taskhub_index_tasks", index="movies", status="succeeded") == 1
    assert value(samples, "taskhub_index_tasks", index="books", status="enqueued") == 2
    assert value(samples, "taskhub_indexes") == 2


async def test_attempts_exhausted_and_retries_are_counted(config, clock):
    """Two attempts a task: one fails retryably twice, the other's lease expires twice."""
    service = await app.start(dataclasses.replace(config, max_attempts=2), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = await _stub(channel)
            worker = worker_service_pb2_grpc.WorkerServiceStub(channel)
            failing, expiring = await enqueue(stub, "a"), await enqueue(stub, "b")
            for _ in range(2):
                got = await lease(channel, max_tasks=1)
                assert [t.uid for t in got.tasks] == [failing]
                await worker.CompleteTasks(
                    wpb.CompleteTasksRequest(token=got.lease.token, outcomes=[failure(failing, retryable=True)])
                )
                clock.now += 3_600 * SECOND  # past its backoff
            for _ in range(2):
                got = await lease(channel, max_tasks=1, seconds=1)
                assert [t.uid for t in got.tasks] == [expiring]
                clock.now += 2 * SECOND
                await service.scheduler.tick()
            samples = await scrape(channel)
            for uid in (failing, expiring):
                assert (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task.status == T.TASK_STATUS_FAILED
            label = "documentAdditionOrUpdate"
            assert value(samples, "taskhub_task_retries_total", type=label) == 1
            assert value(samples, "taskhub_task_attempts_exhausted_total", reason="failed") == 1
            assert value(samples, "taskhub_task_attempts_exhausted_total", reason="expired") == 1
            assert value(samples, "taskhub_leases_expired_total") == 2
            assert value(samples, "taskhub_leases_granted_total") == 4
            assert value(samples, "taskhub_tasks_finished_total", type=label, status="failed") == 2
            assert value(samples, "taskhub_tasks_enqueued_total", type=label) == 2
    finally:
        await service.stop(0)


async def _stub(channel):
    from taskhub.v1 import task_service_pb2_grpc

    return task_service_pb2_grpc.TaskServiceStub(channel)


async def test_the_series_budget_holds_with_many_indexes(config, clock):
    """300 indexes of different sizes: the 10 largest have their series, the rest are summed as `~other`."""
    service = await app.start(dataclasses.replace(config, metrics_max_indexes=10), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = await _stub(channel)
            # Index i holds i + 1 tasks: 45,150 in all, in batches of 1,000.
            items = [
                pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid=f"index-{i:03d}")
                for i in range(300)
                for _ in range(i + 1)
            ]
            for at in range(0, len(items), 1_000):
                await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=items[at : at + 1_000]))
            samples = await scrape(channel)
        series = sum(len(labelled) for labelled in samples.values())
        assert series <= 2_000
        if config.task_index != "memory":
            return
        indexes = {dict(labels)["index"] for labels in samples["taskhub_index_tasks"]}
        assert indexes == {f"index-{i:03d}" for i in range(290, 300)} | {"~other"}
        assert value(samples, "taskhub_index_tasks", index="index-299", status="enqueued") == 300
        assert value(samples, "taskhub_index_tasks", index="~other", status="enqueued") == sum(range(1, 291))
        assert value(samples, "taskhub_indexes") == 300
        assert value(samples, "taskhub_tasks", status="enqueued", type="indexCreation") == len(items)
    finally:
        await service.stop(0)


async def test_the_default_budget_with_a_thousand_indexes(service, stub, channel, config):
    """With the defaults (100 indexes), a busy server's scrape stays within 2,000 series."""
    items = [
        pb.EnqueueTaskRequest(type=type_, index_uid=f"index-{i:04d}")
        for i in range(1_000)
        for type_ in (T.TASK_TYPE_INDEX_CREATION, T.TASK_TYPE_INDEX_UPDATE, T.TASK_TYPE_INDEX_DELETION)
    ]
    for at in range(0, len(items), 1_000):
        await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=items[at : at + 1_000]))
    for _ in range(3):
        got = await lease(channel, max_tasks=5)
        await worker_service_pb2_grpc.WorkerServiceStub(channel).CompleteTasks(
            wpb.CompleteTasksRequest(
                token=got.lease.token,
                outcomes=[wpb.TaskOutcome(uid=t.uid) for t in got.tasks[:-1]] + [failure(got.tasks[-1].uid)],
            )
        )
    samples = await scrape(channel)
    assert sum(len(labelled) for labelled in samples.values()) <= 2_000
    if config.task_index == "memory":
        assert len({dict(labels)["index"] for labels in samples["taskhub_index_tasks"]}) == 101


async def test_the_hooks_show_webhooks_and_the_replica(service, channel):
    # Wired at start: this server's name, leading (alone on its SQLite file), and the outbox read from the store.
    samples = await scrape(channel)
    assert value(samples, "taskhub_replica_leader", replica=service.replica.name) == 1
    assert value(samples, "taskhub_webhook_outbox") == 0
    service.metrics.webhooks.delivered("delivered", 3)
    service.metrics.webhooks.delivered("failed")
    service.metrics.replica.set("replica-a", leading=True)
    samples = await scrape(channel)
    assert value(samples, "taskhub_webhook_deliveries_total", outcome="delivered") == 3
    assert value(samples, "taskhub_webhook_deliveries_total", outcome="failed") == 1
    assert value(samples, "taskhub_replica_leader", replica="replica-a") == 1
    assert {labels for labels in samples["taskhub_replica_leader"]} == {frozenset({("replica", "replica-a")})}
    service.metrics.replica.set("replica-a", leading=False)
    assert value(await scrape(channel), "taskhub_replica_leader", replica="replica-a") == 0


async def test_grpc_metrics_need_metrics_get_on_every_index(secured_service, config):
    async with grpc.aio.insecure_channel(secured_service.grpc_target) as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        keys = secured_service.keys
        made = {
            name: keys.secret(
                (
                    await keys.create(
                        actions=actions, indexes=indexes, name=None, description=None, expires_at=None, uid=None
                    )
                ).uid
            )
            for name, actions, indexes in (
                ("metrics", ["metrics.get"], ["*"]),
                ("family", ["metrics.*"], ["*"]),
                ("tasks", ["tasks.*"], ["*"]),
                ("scoped", ["metrics.get"], ["movies"]),
            )
        }

        def auth(key: str):
            return (("authorization", f"Bearer {key}"),)

        code, reason, _ = await error_of(stub.GetMetrics(mpb.GetMetricsRequest()))
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "missing_authorization_header")
        for name in ("tasks", "scoped"):
            code, reason, _ = await error_of(stub.GetMetrics(mpb.GetMetricsRequest(), metadata=auth(made[name])))
            assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "invalid_api_key"), name
        for key in (made["metrics"], made["family"], MASTER_KEY):
            assert "taskhub_build_info" in await scrape(channel, auth(key))


@pytest.fixture
async def served(config):
    """`taskhub serve`'s assembly with the gateway behind uvicorn on a free port, and a master key."""
    running = await app.start(
        dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0", master_key=MASTER_KEY)
    )
    yield running, f"http://127.0.0.1:{running.gateway.port}"
    await running.stop(0)


async def test_the_gateway_serves_the_server_series_and_its_own(served):
    service, url = served
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=master) as http:
        made = await http.post("/keys", json={"actions": ["tasks.*"], "indexes": ["*"], "expiresAt": None})
        assert made.status_code == 201
        for _ in range(3):
            assert (await http.post("/tasks", json={"type": "indexCreation", "indexUid": "movies"})).status_code == 202
        assert (await http.get("/tasks/12345")).status_code == 404
        assert (await http.get("/tasks/12345/")).status_code == 404  # the route of its trimmed path
        assert (await http.get("/nowhere/1")).status_code == 404
        # Without a key, and with a key lacking `metrics.get`: Meilisearch's auth errors, no series.
        response = await http.get("/metrics", headers={"Authorization": ""})
        assert (response.status_code, response.json()["code"]) == (401, "missing_authorization_header")
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {made.json()['key']}"})
        assert (response.status_code, response.json()["code"]) == (403, "invalid_api_key")
        async with http.stream("GET", "/tasks/events") as stream:
            assert stream.status_code == 200
            response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = parse(response.text)
        # The server's series, over gRPC...
        assert value(samples, "taskhub_tasks_enqueued_total", type="indexCreation") == 3
        assert value(samples, "taskhub_watch_streams") == 1
        # ...and the gateway's: its open event stream, and each request by route template and status.
        assert value(samples, "taskhub_http_sse_clients") == 1
        seconds = "taskhub_http_request_duration_seconds_count"
        assert value(samples, seconds, method="POST", route="/tasks", status="202") == 3
        assert value(samples, seconds, method="GET", route="/tasks/{uid}", status="404") == 2
        assert value(samples, seconds, method="GET", route="~unmatched", status="404") == 1
        assert value(samples, seconds, method="GET", route="/metrics", status="401") == 1
        assert value(samples, seconds, method="GET", route="/metrics", status="403") == 1
        assert not any(dict(labels)["route"] == "/tasks/events" for labels in samples[seconds])
        assert value(samples, seconds, method="GET", route="/metrics", status="200") == 0  # this one: after
        # Once the stream is closed, neither side counts it (the server's side ends as the gateway cancels it).
        for _ in range(200):
            samples = parse((await http.get("/metrics")).text)
            if value(samples, "taskhub_watch_streams") == 0:
                break
            await asyncio.sleep(0.05)
        assert value(samples, "taskhub_http_sse_clients") == 0
        assert value(samples, "taskhub_watch_streams") == 0
        assert value(samples, seconds, method="GET", route="/metrics", status="200") >= 1


async def test_a_restart_counts_from_zero_and_its_requeues_are_not_enqueues(config, clock):
    """The tasks a stop left processing go back to the queue at the next start (SQLite): not new tasks."""
    for run in range(2):
        service = await app.start(config, background=False, clock=clock)
        try:
            async with grpc.aio.insecure_channel(service.grpc_target) as channel:
                stub = await _stub(channel)
                if run == 0:
                    for _ in range(3):
                        await enqueue(stub, "movies")
                    assert len((await lease(channel, max_tasks=2)).tasks) == 2
                    continue
                samples = await scrape(channel)
                assert value(samples, "taskhub_tasks_enqueued_total", type="documentAdditionOrUpdate") == 0
                assert value(samples, "taskhub_tasks_stored") == 3
                if config.task_index == "memory":
                    # SQLite's start requeues what was processing; PostgreSQL's ends no lease (replicas).
                    enqueued = 1 if is_postgres_url(config.db) else 3
                    assert (
                        value(samples, "taskhub_tasks", status="enqueued", type="documentAdditionOrUpdate") == enqueued
                    )
                await enqueue(stub, "movies")
                samples = await scrape(channel)
                assert value(samples, "taskhub_tasks_enqueued_total", type="documentAdditionOrUpdate") == 1
        finally:
            await service.stop(0)
