"""Auth over gRPC: master key, API keys by action and index, every RPC against every kind of bad credential."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from google.protobuf import timestamp_pb2

from helpers import T, details_for, error_of
from taskhub.server import app
from taskhub.v1 import (
    key_service_pb2 as kpb,
    key_service_pb2_grpc,
    metrics_service_pb2,
    metrics_service_pb2_grpc,
    operations_service_pb2 as opb,
    operations_service_pb2_grpc,
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    webhook_service_pb2 as hpb,
    webhook_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

MASTER = "a-master-key-of-sixteen-bytes-or-more"


NIL = "00000000-0000-0000-0000-000000000000"


def bearer(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def secured(config, clock):
    service = await app.start(dataclasses.replace(config, master_key=MASTER), background=False, clock=clock)
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        yield service, channel
    await service.stop(0)


@pytest.fixture
async def keys(secured, clock):
    """API keys of each kind, and one task in `movies`, one in `books`, one global (a dump)."""
    service, channel = secured
    admin = key_service_pb2_grpc.KeyServiceStub(channel)

    async def create(actions, indexes, **extra) -> str:
        request = kpb.CreateKeyRequest(actions=actions, indexes=indexes, **extra)
        return (await admin.CreateKey(request, metadata=bearer(MASTER))).key.key

    soon = timestamp_pb2.Timestamp(seconds=clock.now // 1_000_000 + 60)
    made = {
        "all": await create(["*"], ["*"]),
        "movies_get": await create(["tasks.get"], ["movies"]),
        "mov_prefix": await create(["tasks.*", "workers.*"], ["mov*"]),
        "enqueue_only": await create(["tasks.enqueue"], ["*"]),
        "books_all": await create(["*"], ["books"]),
        "expiring": await create(["*"], ["*"], expires_at=soon),
    }
    tasks = task_service_pb2_grpc.TaskServiceStub(channel)
    for index in ("movies", "books"):
        await tasks.EnqueueTask(
            pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid=index), metadata=bearer(MASTER)
        )
    await tasks.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION), metadata=bearer(MASTER))
    clock.now += 61_000_000  # the expiring key is now expired
    return made


def calls(channel):
    """One call of every RPC, as a function of its metadata."""
    tasks = task_service_pb2_grpc.TaskServiceStub(channel)
    workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
    admin = key_service_pb2_grpc.KeyServiceStub(channel)
    metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)
    operations = operations_service_pb2_grpc.OperationsServiceStub(channel)
    hooks = webhook_service_pb2_grpc.WebhookServiceStub(channel)
    movies = task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["movies"]))
    return {
        "ListTasks": lambda md: tasks.ListTasks(pb.ListTasksRequest(), metadata=md),
        "GetTask": lambda md: tasks.GetTask(pb.GetTaskRequest(uid=0), metadata=md),
        "EnqueueTask": lambda md: tasks.EnqueueTask(
            pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="movies"), metadata=md
        ),
        "EnqueueTasks": lambda md: tasks.EnqueueTasks(
            pb.EnqueueTasksRequest(tasks=[pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="movies")]),
            metadata=md,
        ),
        "CancelTasks": lambda md: tasks.CancelTasks(pb.CancelTasksRequest(filter=movies), metadata=md),
        "DeleteTasks": lambda md: tasks.DeleteTasks(pb.DeleteTasksRequest(filter=movies), metadata=md),
        "RequeueTasks": lambda md: tasks.RequeueTasks(pb.RequeueTasksRequest(filter=movies), metadata=md),
        "WatchTask": lambda md: tasks.WatchTask(pb.WatchTaskRequest(uid=0), metadata=md).read(),
        "WatchTasks": lambda md: tasks.WatchTasks(pb.WatchTasksRequest(after=0), metadata=md).read(),
        "GetVersion": lambda md: tasks.GetVersion(pb.GetVersionRequest(), metadata=md),
        "ListBatches": lambda md: tasks.ListBatches(pb.ListBatchesRequest(), metadata=md),
        "GetBatch": lambda md: tasks.GetBatch(pb.GetBatchRequest(uid=0), metadata=md),
        "LeaseTasks": lambda md: workers.LeaseTasks(wpb.LeaseTasksRequest(), metadata=md),
        "RenewLease": lambda md: workers.RenewLease(wpb.RenewLeaseRequest(token="t"), metadata=md),
        "CompleteTasks": lambda md: workers.CompleteTasks(wpb.CompleteTasksRequest(token="t"), metadata=md),
        "ReleaseLease": lambda md: workers.ReleaseLease(wpb.ReleaseLeaseRequest(token="t"), metadata=md),
        "CreateKey": lambda md: admin.CreateKey(kpb.CreateKeyRequest(actions=["*"], indexes=["*"]), metadata=md),
        "ListKeys": lambda md: admin.ListKeys(kpb.ListKeysRequest(), metadata=md),
        "GetKey": lambda md: admin.GetKey(kpb.GetKeyRequest(key="x"), metadata=md),
        "UpdateKey": lambda md: admin.UpdateKey(kpb.UpdateKeyRequest(key="x"), metadata=md),
        "DeleteKey": lambda md: admin.DeleteKey(kpb.DeleteKeyRequest(key="x"), metadata=md),
        "GetMetrics": lambda md: metrics.GetMetrics(metrics_service_pb2.GetMetricsRequest(), metadata=md),
        "ListLeases": lambda md: operations.ListLeases(opb.ListLeasesRequest(), metadata=md),
        "GetActivity": lambda md: operations.GetActivity(opb.GetActivityRequest(), metadata=md),
        "ListWebhooks": lambda md: hooks.ListWebhooks(hpb.ListWebhooksRequest(), metadata=md),
        "GetWebhook": lambda md: hooks.GetWebhook(hpb.GetWebhookRequest(uuid=NIL), metadata=md),
        "CreateWebhook": lambda md: hooks.CreateWebhook(hpb.CreateWebhookRequest(url="https://x.io/"), metadata=md),
        "UpdateWebhook": lambda md: hooks.UpdateWebhook(hpb.UpdateWebhookRequest(uuid=NIL), metadata=md),
        "DeleteWebhook": lambda md: hooks.DeleteWebhook(hpb.DeleteWebhookRequest(uuid=NIL), metadata=md),
    }


MISSING = (
    grpc.StatusCode.UNAUTHENTICATED,
    "missing_authorization_header",
    "The Authorization header is missing. It must use the bearer authorization method.",
)
INVALID = (grpc.StatusCode.PERMISSION_DENIED, "invalid_api_key", "The provided API key is invalid.")


RPCS = [
    "ListTasks",
    "GetTask",
    "EnqueueTask",
    "EnqueueTasks",
    "CancelTasks",
    "DeleteTasks",
    "RequeueTasks",
    "WatchTask",
    "WatchTasks",
    "GetVersion",
    "ListBatches",
    "GetBatch",
    "LeaseTasks",
    "RenewLease",
    "CompleteTasks",
    "ReleaseLease",
    "CreateKey",
    "ListKeys",
    "GetKey",
    "UpdateKey",
    "DeleteKey",
    "GetMetrics",
    "ListLeases",
    "GetActivity",
    "ListWebhooks",
    "GetWebhook",
    "CreateWebhook",
    "UpdateWebhook",
    "DeleteWebhook",
]


def test_the_matrix_covers_every_rpc():
    from google.protobuf import descriptor_pool

    from taskhub.server.app import SERVICE_NAMES

    pool = descriptor_pool.Default()
    declared = {m.name for name in SERVICE_NAMES for m in pool.FindServiceByName(name).methods}
    assert declared == set(RPCS)


@pytest.mark.parametrize("rpc", RPCS)
async def test_every_rpc_refuses_bad_credentials(secured, keys, rpc):
    _, channel = secured
    call = calls(channel)[rpc]
    assert set(calls(channel)) == set(RPCS)
    assert await error_of(call(())) == MISSING
    assert await error_of(call((("authorization", MASTER),))) == MISSING  # not a bearer header
    assert await error_of(call((("authorization", "Bearer "),))) == MISSING
    assert await error_of(call(bearer("not-a-key"))) == INVALID
    assert await error_of(call(bearer(keys["expiring"]))) == INVALID
    if rpc in (
        "ListTasks",
        "GetTask",
        "WatchTask",
        "WatchTasks",
        "ListBatches",
        "GetBatch",
        "ListLeases",
        "GetActivity",
    ):
        assert await error_of(call(bearer(keys["enqueue_only"]))) == INVALID  # lacks tasks.get
    else:
        assert await error_of(call(bearer(keys["movies_get"]))) == INVALID  # lacks the action


async def test_master_key_may_do_everything_but_never_shows(secured, keys):
    _, channel = secured
    admin = key_service_pb2_grpc.KeyServiceStub(channel)
    listed = await admin.ListKeys(kpb.ListKeysRequest(), metadata=bearer(MASTER))
    assert listed.total == 6 and MASTER not in str(listed)
    assert {k.key for k in listed.results} == set(keys.values())


async def test_scoped_keys_see_only_their_indexes(secured, keys):
    service, channel = secured
    tasks = task_service_pb2_grpc.TaskServiceStub(channel)
    by_key = {}
    for name in ("all", "movies_get", "mov_prefix", "books_all"):
        page = await tasks.ListTasks(pb.ListTasksRequest(), metadata=bearer(keys[name]))
        by_key[name] = [(t.uid, t.index_uid) for t in page.results]
        assert page.total == len(page.results)
    assert by_key == {
        "all": [(2, ""), (1, "books"), (0, "movies")],
        "movies_get": [(0, "movies")],
        "mov_prefix": [(0, "movies")],
        "books_all": [(1, "books")],
    }
    # Another index's task, or a global one, does not exist for a scoped key.
    for uid in (1, 2):
        code, reason, _ = await error_of(tasks.GetTask(pb.GetTaskRequest(uid=uid), metadata=bearer(keys["movies_get"])))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "task_not_found")
        code, reason, _ = await error_of(
            tasks.WatchTask(pb.WatchTaskRequest(uid=uid), metadata=bearer(keys["movies_get"])).read()
        )
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "task_not_found")
    # A filtered watch replays and follows only what the key sees.
    stream = tasks.WatchTasks(pb.WatchTasksRequest(after=0), metadata=bearer(keys["books_all"]))
    first = await asyncio.wait_for(stream.read(), 5)
    assert first.task.index_uid == "books"
    await tasks.EnqueueTask(
        pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_UPDATE, index_uid="movies"), metadata=bearer(MASTER)
    )
    await tasks.EnqueueTask(
        pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_UPDATE, index_uid="books"), metadata=bearer(MASTER)
    )
    second = await asyncio.wait_for(stream.read(), 5)
    assert (second.task.uid, second.task.index_uid) == (4, "books")
    stream.cancel()


async def test_scoped_enqueue_cancel_and_delete(secured, keys):
    service, channel = secured
    tasks = task_service_pb2_grpc.TaskServiceStub(channel)
    books = bearer(keys["books_all"])
    for request in (
        pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="movies"),
        pb.EnqueueTaskRequest(type=T.TASK_TYPE_DUMP_CREATION),
    ):
        assert await error_of(tasks.EnqueueTask(request, metadata=books)) == INVALID
    # In a batch, one task outside the key's indexes refuses them all.
    batch = pb.EnqueueTasksRequest(
        tasks=[
            pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="books"),
            pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="movies"),
        ]
    )
    stored = (await tasks.ListTasks(pb.ListTasksRequest(), metadata=bearer(MASTER))).total
    code, reason, message = await error_of(tasks.EnqueueTasks(batch, metadata=books))
    assert (code, reason, message) == (INVALID[0], INVALID[1], "`tasks[1]`: The provided API key is invalid.")
    assert (await tasks.ListTasks(pb.ListTasksRequest(), metadata=bearer(MASTER))).total == stored
    everything = task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[T.TASK_STATUS_ENQUEUED]))
    cancel = await tasks.CancelTasks(pb.CancelTasksRequest(filter=everything), metadata=books)
    await service.scheduler.tick()
    done = (await tasks.GetTask(pb.GetTaskRequest(uid=cancel.task.task_uid), metadata=bearer(MASTER))).task
    assert (done.details.task_cancelation.matched_tasks, done.details.task_cancelation.canceled_tasks) == (1, 1)
    statuses = [(await tasks.GetTask(pb.GetTaskRequest(uid=u), metadata=bearer(MASTER))).task.status for u in range(2)]
    assert statuses == [T.TASK_STATUS_ENQUEUED, T.TASK_STATUS_CANCELED]


async def test_workers_lease_only_what_their_key_covers(secured, keys):
    service, channel = secured
    workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
    await service.scheduler.tick()  # the dump runs first
    lease = await workers.LeaseTasks(wpb.LeaseTasksRequest(), metadata=bearer(keys["mov_prefix"]))
    assert [(t.uid, t.index_uid) for t in lease.tasks] == [(0, "movies")]
    assert not (await workers.LeaseTasks(wpb.LeaseTasksRequest(), metadata=bearer(keys["mov_prefix"]))).HasField(
        "lease"
    )


async def test_key_management(secured, keys, clock):
    _, channel = secured
    admin = key_service_pb2_grpc.KeyServiceStub(channel)
    master = bearer(MASTER)
    created = (
        await admin.CreateKey(
            kpb.CreateKeyRequest(
                name="ci",
                description="for CI",
                actions=["tasks.get"],
                indexes=["movies"],
                uid="01b4bc42-eb33-4041-b481-254d00cce834",
            ),
            metadata=master,
        )
    ).key
    assert (created.uid, created.name, list(created.actions), list(created.indexes), len(created.key)) == (
        "01b4bc42-eb33-4041-b481-254d00cce834",
        "ci",
        ["tasks.get"],
        ["movies"],
        64,
    )
    assert (await admin.GetKey(kpb.GetKeyRequest(key=created.key), metadata=master)).key.uid == created.uid
    updated = (await admin.UpdateKey(kpb.UpdateKeyRequest(key=created.uid, name="renamed"), metadata=master)).key
    assert (updated.name, updated.description) == ("renamed", "for CI")
    # With a mask, a path left unset is cleared; a path outside name and description is refused.
    cleared = (
        await admin.UpdateKey(
            kpb.UpdateKeyRequest(key=created.uid, name="kept", update_mask={"paths": ["name", "description"]}),
            metadata=master,
        )
    ).key
    assert (cleared.name, cleared.HasField("description")) == ("kept", False)
    code, reason, _ = await error_of(
        admin.UpdateKey(kpb.UpdateKeyRequest(key=created.uid, update_mask={"paths": ["actions"]}), metadata=master)
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "bad_request")
    page = await admin.ListKeys(kpb.ListKeysRequest(offset=1, limit=2), metadata=master)
    assert (page.total, page.offset, page.limit, len(page.results)) == (7, 1, 2, 2)
    await admin.DeleteKey(kpb.DeleteKeyRequest(key=created.uid), metadata=master)
    tasks = task_service_pb2_grpc.TaskServiceStub(channel)
    assert await error_of(tasks.ListTasks(pb.ListTasksRequest(), metadata=bearer(created.key))) == INVALID
    code, reason, _ = await error_of(admin.GetKey(kpb.GetKeyRequest(key=created.uid), metadata=master))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "api_key_not_found")
    for request, reason in (
        (kpb.CreateKeyRequest(actions=["tasks.fly"], indexes=["*"]), "invalid_api_key_actions"),
        (kpb.CreateKeyRequest(actions=[], indexes=["*"]), "invalid_api_key_actions"),
        (kpb.CreateKeyRequest(actions=["*"], indexes=["bad index"]), "invalid_api_key_indexes"),
        (kpb.CreateKeyRequest(actions=["*"], indexes=["*"], uid="nope"), "invalid_api_key_uid"),
        (
            kpb.CreateKeyRequest(actions=["*"], indexes=["*"], expires_at=timestamp_pb2.Timestamp(seconds=1)),
            "invalid_api_key_expires_at",
        ),
    ):
        code, got, _ = await error_of(admin.CreateKey(request, metadata=master))
        assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


async def test_keys_survive_a_restart(config, clock):
    secured_config = dataclasses.replace(config, master_key=MASTER)
    service = await app.start(secured_config, background=False, clock=clock)
    record = await service.keys.create(
        name=None, description=None, actions=["tasks.get"], indexes=["*"], expires_at=None, uid=None
    )
    secret = service.keys.secret(record.uid)
    await service.stop(0)
    service = await app.start(secured_config, background=False, clock=clock)
    try:
        assert service.keys.authenticate(f"Bearer {secret}").actions == frozenset({"tasks.get"})
        # The secret is derived, never stored.
        assert secret not in (
            await service.scheduler.call(lambda: str(service.store.conn.execute("SELECT * FROM api_keys").fetchall()))
        )
    finally:
        await service.stop(0)


async def test_without_a_master_key_everything_is_open_but_keys(stub, channel):
    await stub.EnqueueTask(
        pb.EnqueueTaskRequest(
            type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
            index_uid="a",
            details=details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, received_documents=1),
        )
    )
    admin = key_service_pb2_grpc.KeyServiceStub(channel)
    code, reason, _ = await error_of(admin.ListKeys(kpb.ListKeysRequest()))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "missing_master_key")
