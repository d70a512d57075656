"""Timestamps and durations from outside are range-checked: INVALID_ARGUMENT with the parameter's own code.

Over a real gRPC server (TaskService filters, WorkerService leases, KeyService keys) and
through the gateway (key `expiresAt`, filter dates at the ends of year 1..9999).
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from conftest import MASTER_KEY, TEST_DB
from helpers import enqueue, error_of
from taskhub.v1 import (
    key_service_pb2 as kpb,
    key_service_pb2_grpc,
    task_pb2,
    task_service_pb2 as pb,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

MASTER = (("authorization", f"Bearer {MASTER_KEY}"),)
HTTP_MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
INVALID = grpc.StatusCode.INVALID_ARGUMENT
# Out of google.protobuf.Timestamp's range (years 1..9999) each way, and a nanos field out of its own (in 2096).
BAD_TIMESTAMPS = [
    timestamp_pb2.Timestamp(seconds=2**62),
    timestamp_pb2.Timestamp(seconds=-(2**40)),
    timestamp_pb2.Timestamp(seconds=253_402_300_800),
    timestamp_pb2.Timestamp(seconds=-62_135_596_801),
    timestamp_pb2.Timestamp(seconds=4_000_000_000, nanos=-1),
    timestamp_pb2.Timestamp(seconds=4_000_000_000, nanos=10**9),
]
DATE_FIELDS = [
    "before_enqueued_at",
    "after_enqueued_at",
    "before_started_at",
    "after_started_at",
    "before_finished_at",
    "after_finished_at",
]


@pytest.fixture
def workers(channel) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(channel)


def _filter(field: str, ts: timestamp_pb2.Timestamp) -> task_pb2.TaskFilter:
    message = task_pb2.TaskFilter()
    getattr(message, field).CopyFrom(ts)
    return message


@pytest.mark.parametrize("field", DATE_FIELDS)
@pytest.mark.parametrize("ts", BAD_TIMESTAMPS, ids=lambda ts: f"{ts.seconds}s{ts.nanos}ns")
async def test_filter_dates_out_of_range_are_invalid_on_every_method(stub, field, ts):
    await enqueue(stub)
    calls = [
        stub.ListTasks(pb.ListTasksRequest(filter=_filter(field, ts))),
        stub.CancelTasks(pb.CancelTasksRequest(filter=_filter(field, ts))),
        stub.DeleteTasks(pb.DeleteTasksRequest(filter=_filter(field, ts))),
    ]
    for call in calls:
        code, reason, message = await error_of(call)
        assert (code, reason) == (INVALID, f"invalid_task_{field}")
        camel = field.split("_")[0] + "".join(word.capitalize() for word in field.split("_")[1:])
        assert f"`{camel}`" in message and "0001-01-01" in message and "9999-12-31" in message
    watch = stub.WatchTasks(pb.WatchTasksRequest(filter=_filter(field, ts)))
    code, reason, _ = await error_of(watch.read())
    assert (code, reason) == (INVALID, f"invalid_task_{field}")
    # Nothing was enqueued by the refused cancelation and deletion.
    assert (await stub.ListTasks(pb.ListTasksRequest())).total == 1


async def test_filter_dates_at_the_ends_of_the_range_are_fine(stub):
    await enqueue(stub)
    lowest, highest = (
        timestamp_pb2.Timestamp(seconds=-62_135_596_800),
        timestamp_pb2.Timestamp(seconds=253_402_300_799, nanos=999_999_999),
    )
    assert (await stub.ListTasks(pb.ListTasksRequest(filter=_filter("after_enqueued_at", lowest)))).total == 1
    assert (await stub.ListTasks(pb.ListTasksRequest(filter=_filter("before_enqueued_at", highest)))).total == 1
    assert (await stub.ListTasks(pb.ListTasksRequest(filter=_filter("after_enqueued_at", highest)))).total == 0


def _seconds(seconds: int, nanos: int = 0) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


# Past google.protobuf.Duration's range (10,000 years), mixed signs, nanos out of range.
ABSURD = [_seconds(10**15), _seconds(-(10**15)), _seconds(1, -5), _seconds(0, 10**9)]


@pytest.mark.parametrize("wait", [*ABSURD, _seconds(-1)], ids=lambda d: f"{d.seconds}s{d.nanos}ns")
async def test_lease_wait_out_of_range_is_invalid(stub, workers, wait):
    await enqueue(stub)
    code, reason, message = await error_of(workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", wait=wait)))
    assert (code, reason) == (INVALID, "invalid_lease_wait") and "`wait`" in message
    assert (await stub.GetTask(pb.GetTaskRequest(uid=0))).task.status == task_pb2.TASK_STATUS_ENQUEUED


@pytest.mark.parametrize(
    "duration", [*ABSURD, _seconds(0), _seconds(-1), _seconds(0, -1)], ids=lambda d: f"{d.seconds}s{d.nanos}ns"
)
async def test_lease_duration_out_of_range_is_invalid(stub, workers, duration):
    await enqueue(stub)
    code, reason, message = await error_of(
        workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", lease_duration=duration))
    )
    assert (code, reason) == (INVALID, "invalid_lease_duration") and "`lease_duration`" in message
    assert (await stub.GetTask(pb.GetTaskRequest(uid=0))).task.status == task_pb2.TASK_STATUS_ENQUEUED


@pytest.mark.parametrize(
    "duration", [*ABSURD, _seconds(0), _seconds(-1), _seconds(-3600)], ids=lambda d: f"{d.seconds}s{d.nanos}ns"
)
async def test_renew_duration_out_of_range_is_invalid_and_keeps_the_lease(stub, workers, clock, duration):
    await enqueue(stub)
    batch = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", lease_duration=_seconds(10)))
    code, reason, _ = await error_of(
        workers.RenewLease(wpb.RenewLeaseRequest(token=batch.lease.token, lease_duration=duration))
    )
    assert (code, reason) == (INVALID, "invalid_lease_duration")
    # The lease is whole: a renewal without a duration still works.
    renewed = await workers.RenewLease(wpb.RenewLeaseRequest(token=batch.lease.token))
    assert not renewed.canceled and renewed.deadline.seconds >= batch.lease.deadline.seconds


async def test_renew_is_bounded_as_a_lease_is(stub, workers, clock):
    await enqueue(stub)
    batch = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", lease_duration=_seconds(10 * 365 * 86_400)))
    # LeaseTasks holds a batch an hour at most; so does RenewLease.
    assert batch.lease.deadline.seconds <= clock.now // 1_000_000 + 3_600
    renewed = await workers.RenewLease(
        wpb.RenewLeaseRequest(token=batch.lease.token, lease_duration=_seconds(10 * 365 * 86_400))
    )
    assert renewed.deadline.seconds <= clock.now // 1_000_000 + 3_600
    # and a sub-second one is a second, as for LeaseTasks.
    renewed = await workers.RenewLease(
        wpb.RenewLeaseRequest(token=batch.lease.token, lease_duration=_seconds(0, 1_000))
    )
    assert renewed.deadline.seconds * 1_000_000 + renewed.deadline.nanos // 1_000 >= clock.now + 500_000


@pytest.fixture
async def keys(secured_service) -> key_service_pb2_grpc.KeyServiceStub:
    async with grpc.aio.insecure_channel(secured_service.grpc_target) as channel:
        yield key_service_pb2_grpc.KeyServiceStub(channel)


@pytest.mark.parametrize("ts", BAD_TIMESTAMPS, ids=lambda ts: f"{ts.seconds}s{ts.nanos}ns")
async def test_create_key_expires_at_out_of_range_is_invalid(keys, ts):
    request = kpb.CreateKeyRequest(actions=["*"], indexes=["*"], expires_at=ts)
    code, reason, message = await error_of(keys.CreateKey(request, metadata=MASTER))
    assert (code, reason) == (INVALID, "invalid_api_key_expires_at") and "`.expiresAt`" in message
    assert (await keys.ListKeys(kpb.ListKeysRequest(), metadata=MASTER)).total == 0


async def test_http_key_past_year_9999_is_refused_and_keys_stay_listable(secured_http):
    body = {"actions": ["*"], "indexes": ["*"], "expiresAt": "9999-12-31T23:00:00-05:00"}
    response = await secured_http.post("/keys", json=body, headers=HTTP_MASTER)
    assert response.status_code == 400 and response.json()["code"] == "invalid_api_key_expires_at"
    listed = await secured_http.get("/keys", headers=HTTP_MASTER)
    assert listed.status_code == 200 and listed.json()["total"] == 0


async def test_http_key_at_the_end_of_year_9999_renders(secured_http):
    body = {"actions": ["*"], "indexes": ["*"], "expiresAt": "9999-12-31T23:59:59Z"}
    assert (await secured_http.post("/keys", json=body, headers=HTTP_MASTER)).status_code == 201
    listed = await secured_http.get("/keys", headers=HTTP_MASTER)
    assert listed.status_code == 200 and listed.json()["results"][0]["expiresAt"] == "9999-12-31T23:59:59.000000Z"


async def test_http_key_in_the_past_is_refused_as_meilisearch_does(secured_http):
    body = {"actions": ["*"], "indexes": ["*"], "expiresAt": "2010-11-13T00:00:00Z"}
    response = await secured_http.post("/keys", json=body, headers=HTTP_MASTER)
    assert response.status_code == 400 and response.json()["code"] == "invalid_api_key_expires_at"


@pytest.mark.parametrize(
    "query",
    [
        "afterEnqueuedAt=9999-12-31",
        "beforeEnqueuedAt=9999-12-31T23:00:00-05:00",
        "afterStartedAt=0001-01-01T00:30:00%2B01:00",
        "beforeFinishedAt=0001-01-01",
    ],
)
async def test_http_filter_dates_at_the_ends_of_meilisearchs_range_still_answer(http, stub, query):
    # Meilisearch takes these (an after-date past 9999-12-31 stays there); the gateway keeps them in range.
    await enqueue(stub)
    for method, path in (("GET", "/tasks"), ("POST", "/tasks/cancel"), ("DELETE", "/tasks")):
        response = await http.request(method, f"{path}?{query}")
        assert response.status_code in (200, 202), (method, query, response.text)


async def test_a_key_stored_past_year_9999_still_renders(secured_service, secured_http):
    # As a key created before its date was range-checked: written to the store, then loaded at start.
    created = await secured_http.post(
        "/keys", json={"actions": ["*"], "indexes": ["*"], "expiresAt": None}, headers=HTTP_MASTER
    )
    record = secured_service.keys.get(created.json()["uid"])
    mark = "%s" if TEST_DB == "postgres" else "?"  # each driver's placeholder
    secured_service.store.conn.execute(
        f"UPDATE api_keys SET expires_at = {mark} WHERE uid = {mark}", (2**40 * 1_000_000, record.uid)
    )
    await secured_service.keys.load()
    listed = await secured_http.get("/keys", headers=HTTP_MASTER)
    assert listed.status_code == 200, listed.text
    assert listed.json()["results"][0]["expiresAt"] == "9999-12-31T23:59:59.999999Z"
