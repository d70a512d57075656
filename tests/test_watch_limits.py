"""Watch slots per key and per connection, beside the global cap; SSE clients limited by the gateway.

Real server on 127.0.0.1:0, real gRPC channels (one TCP connection each, so one peer each),
and for SSE the real uvicorn gateway that `taskhub serve` starts beside the server. Distinct
HTTP clients are told apart as behind a local reverse proxy: uvicorn takes the client's address
from `X-Forwarded-For` when the request comes from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket

import grpc
import httpx
import pytest

from conftest import MASTER_KEY
from helpers import enqueue, error_of
from taskhub.server import app
from taskhub.v1 import (
    key_service_pb2 as kpb,
    key_service_pb2_grpc,
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
)

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@contextlib.asynccontextmanager
async def running(config, clock, **settings):
    service = await app.start(dataclasses.replace(config, **settings), background=False, clock=clock)
    try:
        yield service
    finally:
        await service.stop(0)


@contextlib.asynccontextmanager
async def channels(service, count: int):
    opened = [grpc.aio.insecure_channel(service.grpc_target) for _ in range(count)]
    try:
        yield [task_service_pb2_grpc.TaskServiceStub(c) for c in opened]
    finally:
        for channel in opened:
            await channel.close()


async def open_watch(stub, metadata=()):
    """A WatchTasks stream once the server has accepted it (its initial metadata arrived)."""
    call = stub.WatchTasks(pb.WatchTasksRequest(filter=task_pb2.TaskFilter()), metadata=metadata)
    await asyncio.wait_for(call.initial_metadata(), 5)
    return call


async def refusal(stub, metadata=()) -> tuple[grpc.StatusCode, str, str]:
    call = stub.WatchTasks(pb.WatchTasksRequest(filter=task_pb2.TaskFilter()), metadata=metadata)
    return await error_of(asyncio.wait_for(call.read(), 5))


async def test_a_connection_gets_at_most_its_watch_slots(config, clock):
    async with running(config, clock, max_watchers_per_connection=2) as service, channels(service, 2) as (a, b):
        uid = await enqueue(a)
        one = await open_watch(a)
        task_watch = a.WatchTask(pb.WatchTaskRequest(uid=uid))
        assert (await asyncio.wait_for(task_watch.read(), 5)).task.uid == uid
        code, reason, message = await refusal(a)
        assert (code, reason) == (EXHAUSTED, "too_many_watches")
        assert "connection" in message and "2" in message
        # WatchTask counts as WatchTasks does.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(a.WatchTask(pb.WatchTaskRequest(uid=uid)).read(), 5)
        assert refused.value.code() == EXHAUSTED
        # Another connection has slots of its own; a slot given back can be taken again.
        other = await open_watch(b)
        one.cancel()
        for _ in range(200):
            if service.scheduler.hub.watchers == 2:
                break
            await asyncio.sleep(0.01)
        again = await open_watch(a)
        for call in (task_watch, other, again):
            call.cancel()


async def test_a_key_gets_at_most_its_watch_slots_on_any_connection(config, clock):
    async with (
        running(config, clock, master_key=MASTER_KEY, max_watchers_per_key=2) as service,
        channels(service, 4) as stubs,
    ):
        master = (("authorization", f"Bearer {MASTER_KEY}"),)
        async with grpc.aio.insecure_channel(service.grpc_target) as key_channel:
            created = await key_service_pb2_grpc.KeyServiceStub(key_channel).CreateKey(
                kpb.CreateKeyRequest(actions=["tasks.get"], indexes=["*"]), metadata=master
            )
        other_key = (("authorization", f"Bearer {created.key.key}"),)
        held = [await open_watch(stubs[0], master), await open_watch(stubs[1], master)]
        # The same key from a third connection, and however its header is spelled.
        code, reason, message = await refusal(stubs[2], master)
        assert (code, reason) == (EXHAUSTED, "too_many_watches") and "key" in message
        assert (await refusal(stubs[2], (("authorization", f"bearer   {MASTER_KEY} "),)))[1] == "too_many_watches"
        # Another key is not held back by it.
        held.append(await open_watch(stubs[3], other_key))
        for call in held:
            call.cancel()


async def test_without_a_master_key_every_caller_is_one_anonymous_key(config, clock):
    async with running(config, clock, max_watchers_per_key=2) as service, channels(service, 3) as stubs:
        held = [await open_watch(stubs[0]), await open_watch(stubs[1])]
        assert (await refusal(stubs[2]))[:2] == (EXHAUSTED, "too_many_watches")
        for call in held:
            call.cancel()


@contextlib.asynccontextmanager
async def with_gateway(config, clock, **settings):
    """`taskhub serve` with its gateway on 127.0.0.1:0, and an HTTP client to it."""
    async with running(config, clock, no_http=False, http_listen="127.0.0.1:0", **settings) as service:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{service.gateway.port}", timeout=10, limits=httpx.Limits(max_connections=50)
        ) as http:
            yield service, http


async def sse(http: httpx.AsyncClient, path: str, client: str) -> httpx.Response:
    return await http.send(http.build_request("GET", path, headers={"x-forwarded-for": client}), stream=True)


async def test_sse_clients_are_limited_each_not_as_the_gateways_one_connection(config, clock):
    # The gateway opens every watch over its one gRPC channel: were the server to count that as one
    # connection, two clients with two streams each would be refused at its limit of 2.
    async with with_gateway(config, clock, max_watchers_per_connection=2, max_watchers_per_client=2) as (service, http):
        uid = (await http.post("/tasks", json={"type": "indexCreation", "indexUid": "movies"})).json()["taskUid"]
        streams = []
        for client in ("203.0.113.1", "203.0.113.2"):
            # Filters of their own: clients of one filter would share one server watch.
            for path in (f"/tasks/events?indexUids={client.replace('.', '-')}", f"/tasks/{uid}/events"):
                response = await sse(http, path, client)
                assert response.status_code == 200, (await response.aread()).decode()
                streams.append(response)
        refused = await sse(http, "/tasks/events", "203.0.113.1")
        body = await refused.aread()
        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_watches" and refused.json()["type"] == "system"
        assert "client" in refused.json()["message"]
        assert service.scheduler.hub.watchers == 4  # over the gateway's one connection, limited to 2
        # A client that closes a stream gets its slot back.
        await streams[0].aclose()
        for _ in range(200):
            again = await sse(http, "/tasks/events", "203.0.113.1")
            if again.status_code == 200:
                break
            await again.aread()
            await asyncio.sleep(0.02)
        assert again.status_code == 200, body
        streams.append(again)
        for response in streams[1:]:
            await response.aclose()


async def test_sse_watches_count_against_the_callers_key(config, clock):
    async with with_gateway(config, clock, master_key=MASTER_KEY, max_watchers_per_key=1) as (service, http):
        auth = {"authorization": f"Bearer {MASTER_KEY}"}
        first = await http.send(http.build_request("GET", "/tasks/events?indexUids=movies", headers=auth), stream=True)
        assert first.status_code == 200
        # Another filter needs a server watch of its own (one filter's clients share one).
        second = await http.get("/tasks/events?indexUids=books", headers={**auth, "x-forwarded-for": "203.0.113.9"})
        assert second.status_code == 429 and second.json()["code"] == "too_many_watches"
        assert "key" in second.json()["message"]
        await first.aclose()


async def test_a_client_that_never_reads_is_cut_alone(config, clock):
    """One feed, three SSE clients: the one that never reads is cut with `watch_too_slow`, the others get all."""
    async with with_gateway(config, clock) as (service, http):
        feeds = service.gateway.app.state.watches.feeds
        # Small, so that the changes below overflow it once the kernel's socket buffers are full; it must
        # still hold a whole commit's changes.
        feeds.follower_bytes = 1024 * 1024
        fast = [await sse(http, "/tasks/events", "203.0.113.1") for _ in range(2)]
        # A raw client with a tiny receive buffer that never reads: its writes soon block.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", service.gateway.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET /tasks/events HTTP/1.0\r\nHost: 127.0.0.1:{service.gateway.port}\r\n\r\n".encode())
        await writer.drain()
        for _ in range(500):
            if sum(len(f.followers) for f in feeds.open.values()) == 3:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the raw client's stream did not open")
        assert service.scheduler.hub.watchers == 1

        count = None  # known once the producer stops

        async def every_id(response) -> list[int]:
            ids = []
            async for line in response.aiter_lines():
                if line.startswith("id: ") and line != "id: 0":
                    ids.append(int(line[4:]))
                    if ids[-1] == count:
                        return ids
            return ids

        readers = [asyncio.ensure_future(every_id(response)) for response in fast]
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            item = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_DELETION, index_uid="movies")
            item.details.document_deletion.original_filter = "x" * 8_000
            produced = 0
            # Until the slow one is dropped from the feed, then one batch more, which it must not get.
            while sum(len(f.followers) for f in feeds.open.values()) == 3:
                assert produced < 5_000, "the client that never reads was never cut off"
                await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[item] * 10))
                produced += 10
                await asyncio.sleep(0.01)
            await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[item] * 10))
            count = produced + 10
        got = await asyncio.wait_for(asyncio.gather(*readers), 60)
        assert got == [list(range(1, count + 1))] * 2
        # What it had was still written, then the reason; nothing after the cut.
        body = await asyncio.wait_for(reader.read(), 30)
        assert body.rstrip().endswith(
            b'"code":"watch_too_slow","type":"system","link":"https://docs.meilisearch.com/errors#watch_too_slow"}'
        ), body[-300:]
        ids = [int(line[4:]) for line in body.decode().split("\n") if line.startswith("id: ")]
        assert ids[1:] == list(range(1, ids[-1] + 1)) and ids[-1] <= count - 10
        writer.close()
        for response in fast:
            await response.aclose()
