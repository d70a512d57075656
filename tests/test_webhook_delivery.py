"""Webhook deliveries end to end: a real server (background work on), the gateway, and real HTTP receivers
on 127.0.0.1 (tests/webhook_receiver.py), allowed through --experimental-allowed-ip-networks."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import hmac
import re

import grpc
import pytest

from conftest import gateway_client
from helpers import enqueue, finish, start
from taskhub.server import app
from taskhub.v1 import task_service_pb2_grpc
from webhook_receiver import Receiver, free_port

LOOPBACK = "127.0.0.1/32"


@dataclasses.dataclass
class Live:
    service: app.Service
    http: object
    stub: task_service_pb2_grpc.TaskServiceStub


@pytest.fixture
def live_config(config):
    return dataclasses.replace(config, experimental_allowed_ip_networks=LOOPBACK)


async def running(config):
    """A server with its background work (deliveries included), short backoffs for the tests."""
    service = await app.start(config)
    service.delivery.first_delay, service.delivery.max_delay = 0.05, 0.2
    return service


@pytest.fixture
async def live(live_config):
    service = await running(live_config)
    async with gateway_client(service.grpc_target) as http, grpc.aio.insecure_channel(service.grpc_target) as channel:
        yield Live(service, http, task_service_pb2_grpc.TaskServiceStub(channel))
    await service.stop(0)


async def finish_tasks(service, stub, count: int) -> list[int]:
    """`count` tasks enqueued, leased and succeeded one after another; answers their uids."""
    uids = []
    for _ in range(count):
        uid = await enqueue(stub)
        await start(service, uid)
        await finish(service, uid, details={"indexedDocuments": 10})
        uids.append(uid)
    return uids


async def until(condition) -> None:
    """Until `condition()` holds (the test's timeout bounds it)."""
    while not condition():
        await asyncio.sleep(0.02)


async def create(http, url: str, **fields) -> dict:
    response = await http.post("/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_finished_tasks_are_posted_as_meilisearch_does_and_signed(live):
    receiver = await Receiver().start()
    await create(live.http, receiver.url, headers={"X-Custom": "yes"}, secret="s3cret")
    uids = await finish_tasks(live.service, live.stub, 2)
    await receiver.wait_for(lambda r: sorted(r.uids) == uids)
    for request in receiver.received:
        # As Meilisearch: gzipped ndjson, the webhook's headers; plus the signature of the body as sent.
        assert request.headers["content-type"] == "application/x-ndjson"
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["x-custom"] == "yes"
        expected = "sha256=" + hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["x-taskhub-signature"], expected)
        assert gzip.decompress(request.body).endswith(b"\n")
        for task in request.tasks:
            assert task == (await live.http.get(f"/tasks/{task['uid']}")).json()
            assert task["status"] == "succeeded"
    await receiver.stop()


async def test_a_receiver_down_then_up_loses_nothing(live, caplog):
    port = await free_port()
    receiver = Receiver()
    await create(live.http, f"http://127.0.0.1:{port}/hook?token=never-logged", headers={"X-Key": "never-logged"})
    uids = await finish_tasks(live.service, live.stub, 3)
    await until(lambda: live.service.webhooks.counts.failed >= 2)  # tried, and tried again
    await receiver.start(port)
    await receiver.wait_for(lambda r: sorted(set(r.uids)) == uids)
    more = await finish_tasks(live.service, live.stub, 1)
    await receiver.wait_for(lambda r: sorted(set(r.uids)) == uids + more)
    await receiver.stop()
    # The failures were logged, naming the endpoint by scheme and host only: a path or query may hold a token.
    assert f"http://127.0.0.1:{port} unreachable" in caplog.text and "never-logged" not in caplog.text


async def test_undelivered_tasks_survive_a_restart(live_config):
    port = await free_port()
    service = await running(live_config)
    async with gateway_client(service.grpc_target) as http, grpc.aio.insecure_channel(service.grpc_target) as channel:
        await create(http, f"http://127.0.0.1:{port}/hook")
        uids = await finish_tasks(service, task_service_pb2_grpc.TaskServiceStub(channel), 3)
        await until(lambda: service.webhooks.counts.failed >= 1)
    await service.stop(0)

    receiver = await Receiver().start(port)
    service = await running(live_config)
    try:
        await receiver.wait_for(lambda r: sorted(set(r.uids)) == uids)
    finally:
        await service.stop(0)
        await receiver.stop()


async def test_a_silent_endpoint_holds_up_neither_the_queue_nor_another_endpoint(live):
    silent = await Receiver("silent").start()
    healthy = await Receiver().start()
    await create(live.http, silent.url)
    await create(live.http, healthy.url)
    first = await finish_tasks(live.service, live.stub, 1)
    await silent.wait_for(lambda r: r.connections >= 1)  # its POST is in flight, and will get no answer
    await healthy.wait_for(lambda r: r.uids == first)
    # While the silent endpoint holds its POST: the queue goes on, and the other endpoint gets each task.
    for _ in range(3):
        uid = (await finish_tasks(live.service, live.stub, 1))[0]
        await healthy.wait_for(lambda r, uid=uid: uid in r.uids)
    assert silent.received == [] and silent.connections == 1
    await silent.stop()
    await healthy.stop()


async def test_the_outbox_is_bounded_and_counts_what_it_dropped(live_config):
    port = await free_port()
    service = await running(dataclasses.replace(live_config, webhook_outbox_size=3))
    try:
        async with (
            gateway_client(service.grpc_target) as http,
            grpc.aio.insecure_channel(service.grpc_target) as channel,
        ):
            made = await create(http, f"http://127.0.0.1:{port}/hook")
            uids = await finish_tasks(service, task_service_pb2_grpc.TaskServiceStub(channel), 5)
            shown = (await http.get(f"/webhooks/{made['uuid']}")).json()
            assert shown["droppedTasks"] == 2
            assert service.webhooks.counts.dropped == 2
            assert await service.scheduler.units.read(lambda reader: reader.webhooks.outbox_size()) == 3
            receiver = await Receiver().start(port)
            # The three newest are delivered; the two oldest were dropped for good.
            await receiver.wait_for(lambda r: sorted(set(r.uids)) == uids[2:])
            # Once delivered, the entries leave the outbox.
            while await service.scheduler.units.read(lambda reader: reader.webhooks.outbox_size()):
                await asyncio.sleep(0.02)
            await receiver.stop()
    finally:
        await service.stop(0)


async def test_a_name_that_resolves_to_a_refused_address_is_not_posted_to(config):
    receiver = await Receiver().start()
    service = await running(config)  # no allowed network: loopback is refused
    try:
        async with (
            gateway_client(service.grpc_target) as http,
            grpc.aio.insecure_channel(service.grpc_target) as channel,
        ):
            await create(http, f"http://localhost:{receiver.port}/hook")  # a name: checked once resolved
            await finish_tasks(service, task_service_pb2_grpc.TaskServiceStub(channel), 1)
            await until(lambda: service.webhooks.counts.failed >= 2)
            assert receiver.connections == 0 and service.webhooks.counts.ok == 0
    finally:
        await service.stop(0)
        await receiver.stop()


async def test_the_reserved_webhook_of_the_settings_is_delivered_to(live_config):
    receiver = await Receiver().start()
    config = dataclasses.replace(
        live_config, task_webhook_url=receiver.url, task_webhook_authorization_header="Bearer cli-token"
    )
    service = await running(config)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            uids = await finish_tasks(service, task_service_pb2_grpc.TaskServiceStub(channel), 2)
        await receiver.wait_for(lambda r: sorted(set(r.uids)) == uids)
        assert {r.headers["authorization"] for r in receiver.received} == {"Bearer cli-token"}
    finally:
        await service.stop(0)
        await receiver.stop()


@pytest.mark.parametrize(
    ("url", "networks", "why"),
    [
        ("http://127.0.0.1:9/hook", None, "is not globally reachable"),
        ("ftp://example.com/", None, "is not `http` nor `https`"),
        ("not-a-url", LOOPBACK, "relative URL without a base"),
    ],
)
async def test_a_reserved_webhook_that_cannot_be_is_refused_at_start(config, url, networks, why):
    config = dataclasses.replace(config, task_webhook_url=url, experimental_allowed_ip_networks=networks)
    with pytest.raises(ValueError, match="--task-webhook-url: Invalid URL") as raised:
        await app.start(config)
    assert why in str(raised.value)


async def test_allowed_networks_must_be_networks(config):
    with pytest.raises(ValueError, match=re.escape("`10.0.0.0/33` is neither a network")):
        await app.start(dataclasses.replace(config, experimental_allowed_ip_networks="127.0.0.1/32,10.0.0.0/33"))


async def test_a_lead_lost_stops_delivery_and_one_taken_back_delivers_again(live):
    # On replicas the leader alone delivers: losing the lead stops the loops at once; taking it back right after
    # (before the stopped loops have even wound down) starts them afresh, and what finished meanwhile is sent.
    receiver = await Receiver().start()
    await create(live.http, receiver.url)
    replica = live.service.scheduler.replica
    term = replica.term
    assert term and live.service.delivery.running
    replica.became(0)
    assert not live.service.delivery.running
    replica.became(term)
    assert live.service.delivery.running
    uids = await finish_tasks(live.service, live.stub, 2)
    await receiver.wait_for(lambda r: sorted(r.uids) == uids)
    await receiver.stop()
