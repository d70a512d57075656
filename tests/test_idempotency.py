"""Idempotent enqueue through the public interfaces: gRPC `idempotency_key`, HTTP `Idempotency-Key`.

The same key with the same request answers the first task and enqueues nothing; with another
request it is `idempotency_key_conflict`; keys are per API key, expire, are bounded, survive a
restart, and hold between two processes on one database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing

import grpc
import pytest

from cutting_proxy import CuttingProxy
from helpers import details_for, error_of
from taskhub.server import app
from taskhub.server.model import TaskQuery
from taskhub.v1 import (
    key_service_pb2 as kpb,
    key_service_pb2_grpc,
    task_pb2 as T,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
)

MASTER = "a-master-key-of-sixteen-bytes-or-more"
DAY = 24 * 3_600 * 1_000_000
SPAWN = multiprocessing.get_context("spawn")


def request(received: int = 3, index: str = "movies", key: str | None = "k-1") -> pb.EnqueueTaskRequest:
    return pb.EnqueueTaskRequest(
        type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
        index_uid=index,
        details=details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, received_documents=received),
        idempotency_key=key,
    )


async def total(stub, metadata=()) -> int:
    return (await stub.ListTasks(pb.ListTasksRequest(limit=0), metadata=metadata)).total


async def test_the_same_key_and_request_answer_the_first_task_and_enqueue_nothing(stub, service):
    first = (await stub.EnqueueTask(request())).task
    again = (await stub.EnqueueTask(request())).task
    assert again == first
    # Another key, or none, is another task.
    other = (await stub.EnqueueTask(request(key="k-2"))).task
    plain = (await stub.EnqueueTask(request(key=None))).task
    assert (first.task_uid, other.task_uid, plain.task_uid) == (0, 1, 2)
    assert await total(stub) == 3


async def test_the_same_key_with_another_request_is_a_conflict_and_stores_nothing(stub):
    await stub.EnqueueTask(request())
    for changed in (request(received=4), request(index="books")):
        code, reason, message = await error_of(stub.EnqueueTask(changed))
        assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "idempotency_key_conflict")
        assert message == (
            "This idempotency key was already used with another request; use a new key for a new request."
        )
    # A batch under a single task's key is another request too.
    code, reason, _ = await error_of(
        stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[request(key=None)], idempotency_key="k-1"))
    )
    assert reason == "idempotency_key_conflict"
    assert await total(stub) == 1


async def test_one_key_covers_a_whole_batch(stub):
    batch = pb.EnqueueTasksRequest(tasks=[request(1, key=None), request(2, "books", key=None)], idempotency_key="b")
    first = (await stub.EnqueueTasks(batch)).tasks
    again = (await stub.EnqueueTasks(batch)).tasks
    assert [t.task_uid for t in first] == [0, 1] and list(again) == list(first)
    reordered = pb.EnqueueTasksRequest(tasks=[request(2, "books", key=None), request(1, key=None)], idempotency_key="b")
    assert (await error_of(stub.EnqueueTasks(reordered)))[1] == "idempotency_key_conflict"
    # A key on an item rather than on the batch is refused: nothing is stored.
    inner = pb.EnqueueTasksRequest(tasks=[request(key=None), request(key="x")])
    code, reason, message = await error_of(stub.EnqueueTasks(inner))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_idempotency_key")
    assert message.startswith("`tasks[1]`: One idempotency key covers the whole batch")
    assert await total(stub) == 2


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "The idempotency key is empty: give 1 to 256 bytes, or none."),
        ("k" * 257, "The idempotency key is at most 256 bytes (UTF-8), not 257."),
        ("é" * 129, "The idempotency key is at most 256 bytes (UTF-8), not 258."),
    ],
)
async def test_a_key_empty_or_over_256_bytes_is_refused(stub, key, message):
    assert await error_of(stub.EnqueueTask(request(key=key))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_idempotency_key",
        message,
    )
    assert await error_of(stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[request(key=None)], idempotency_key=key)))
    assert await total(stub) == 0
    # 256 bytes is fine.
    assert (await stub.EnqueueTask(request(key="é" * 128))).task.task_uid == 0


async def test_bad_input_is_refused_before_the_key_is_taken(stub):
    """A request refused for its details records no key: the corrected request under that key is enqueued."""
    bad = pb.EnqueueTaskRequest(
        type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="bad index!", idempotency_key="k"
    )
    assert (await error_of(stub.EnqueueTask(bad)))[1] == "invalid_index_uid"
    assert (await stub.EnqueueTask(request(key="k"))).task.task_uid == 0


async def test_keys_are_kept_for_the_ttl_then_answer_no_more(stub, service, clock):
    first = (await stub.EnqueueTask(request())).task.task_uid
    clock.now += DAY - 1_000_000
    assert (await stub.EnqueueTask(request())).task.task_uid == first
    clock.now += 2_000_000
    # Expired: the key is free again, even for another request.
    assert (await stub.EnqueueTask(request(received=9))).task.task_uid == first + 1
    assert (await stub.EnqueueTask(request(received=9))).task.task_uid == first + 1


async def test_the_ttl_and_the_cap_are_server_options(config, clock):
    service = await app.start(
        dataclasses.replace(config, idempotency_ttl="1h", max_idempotency_keys=2), background=False, clock=clock
    )
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            for key in ("a", "b", "c"):
                await stub.EnqueueTask(request(key=key))
            # The cleanup (a tick) drops the oldest past the cap: `a` is free again, `b` and `c` are kept.
            await service.scheduler.tick()
            assert (await stub.EnqueueTask(request(key="a"))).task.task_uid == 3
            assert (await stub.EnqueueTask(request(key="c"))).task.task_uid == 2
            clock.now += 3_600_000_000
            assert (await stub.EnqueueTask(request(key="c"))).task.task_uid == 4
    finally:
        await service.stop(0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("idempotency_ttl", "soon", "'soon' is not a duration (try 24h, 90m, 3600s)"),
        ("idempotency_ttl", "0s", "'0s' is not a duration (try 24h, 90m, 3600s)"),
        ("max_idempotency_keys", -1, "--max-idempotency-keys is 0 or more, not -1"),
    ],
)
async def test_bad_options_are_refused_at_start(config, option, value, message):
    with pytest.raises(ValueError) as refused:
        await app.start(dataclasses.replace(config, **{option: value}), background=False)
    assert str(refused.value) == message


async def test_keys_survive_a_restart(config, clock):
    service = await app.start(config, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            first = (await task_service_pb2_grpc.TaskServiceStub(channel).EnqueueTask(request())).task
    finally:
        await service.stop(0)
    service = await app.start(config, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            assert (await stub.EnqueueTask(request())).task == first
            assert (await error_of(stub.EnqueueTask(request(received=5))))[1] == "idempotency_key_conflict"
            assert await total(stub) == 1
    finally:
        await service.stop(0)


async def test_keys_are_scoped_per_api_key(config, clock):
    service = await app.start(dataclasses.replace(config, master_key=MASTER), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            admin = key_service_pb2_grpc.KeyServiceStub(channel)
            master = (("authorization", f"Bearer {MASTER}"),)
            made = [
                (await admin.CreateKey(kpb.CreateKeyRequest(actions=["*"], indexes=["*"]), metadata=master)).key.key
                for _ in range(2)
            ]
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            callers = [(("authorization", f"Bearer {key}"),) for key in made] + [master]
            uids = [(await stub.EnqueueTask(request(), metadata=md)).task.task_uid for md in callers]
            assert uids == [0, 1, 2]
            # Each caller's own key answers its own first task.
            assert [(await stub.EnqueueTask(request(), metadata=md)).task.task_uid for md in callers] == uids
            assert await total(stub, master) == 3
    finally:
        await service.stop(0)


# -- HTTP -------------------------------------------------------------------------


async def test_http_idempotency_key_header(http):
    body = {"type": "documentAdditionOrUpdate", "indexUid": "movies", "details": {"receivedDocuments": 3}}
    first = await http.post("/tasks", json=body, headers={"Idempotency-Key": "order-17"})
    again = await http.post("/tasks", json=body, headers={"Idempotency-Key": "order-17"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and first.json()["taskUid"] == 0
    conflict = await http.post(
        "/tasks", json={**body, "details": {"receivedDocuments": 4}}, headers={"Idempotency-Key": "order-17"}
    )
    assert conflict.status_code == 409
    assert conflict.json() == {
        "message": "This idempotency key was already used with another request; use a new key for a new request.",
        "code": "idempotency_key_conflict",
        "type": "invalid_request",
        "link": "https://docs.meilisearch.com/errors#idempotency_key_conflict",
    }
    for key, message in (
        ("", "The idempotency key is empty: give 1 to 256 bytes, or none."),
        ("k" * 300, "The idempotency key is at most 256 bytes (UTF-8), not 300."),
    ):
        refused = await http.post("/tasks", json=body, headers={"Idempotency-Key": key})
        assert refused.status_code == 400
        assert refused.json() == {
            "message": message,
            "code": "invalid_idempotency_key",
            "type": "invalid_request",
            "link": "https://docs.meilisearch.com/errors#invalid_idempotency_key",
        }
    # The dump and snapshot routes take the header too.
    dumps = [await http.post("/dumps", headers={"Idempotency-Key": "nightly"}) for _ in range(2)]
    assert dumps[0].json() == dumps[1].json() and dumps[0].json()["taskUid"] == 1
    assert (await http.get("/tasks?limit=0")).json()["total"] == 2


# -- two processes on one database ---------------------------------------------------


def _race(address: str, parity: int, keys: list[str], go, results) -> None:
    """A scheduler of its own over the database (as a second replica would be), enqueueing under `keys`.

    Its clock gives times of its own parity, so each answer's `enqueuedAt` tells which process stored it.
    """
    import asyncio

    from taskhub.server.index.memory import MemoryFinder
    from taskhub.server.model import TaskType
    from taskhub.server.rules.scheduler import Scheduler
    from taskhub.server.storage.sqlite.database import SqliteStorage

    ticks = iter(range(1_700_000_000_000_000 + parity, 1_800_000_000_000_000, 2))

    async def main() -> list[tuple[int, int]]:
        scheduler = Scheduler(SqliteStorage(address), MemoryFinder(), clock=lambda: next(ticks), commit_window=0)
        await scheduler.start(background=False)
        go.wait()
        answers = []
        for key in keys:
            task = await scheduler.enqueue(
                TaskType.DOCUMENT_ADDITION_OR_UPDATE, "movies", {"receivedDocuments": 1}, idempotency_key=key
            )
            answers.append((task.uid, task.enqueued_at))
            # Between keys, so the other process gets its turns even when one of them starts late on a busy machine.
            await asyncio.sleep(0.005)
        await scheduler.stop()
        return answers

    results.put((parity, asyncio.run(main())))


async def test_two_processes_racing_one_key_make_one_task(config, tmp_path):
    address = str(tmp_path / "race.db")
    keys = [f"key-{n}" for n in range(40)]
    go, results = SPAWN.Barrier(2), SPAWN.Queue()
    # From both ends, so they meet in the middle and race the same keys there.
    workers = [
        SPAWN.Process(target=_race, args=(address, parity, order, go, results))
        for parity, order in ((0, keys), (1, keys[::-1]))
    ]
    for worker in workers:
        worker.start()
    got = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(30)
    forward, backward = got[0], got[1][::-1]
    # Every key answered both processes with the same task.
    assert forward == backward
    uids = [uid for uid, _ in forward]
    assert sorted(uids) == list(range(40))
    stored_by = {at % 2 for _, at in forward}
    assert stored_by == {0, 1}, "one process stored every task: the two never raced"
    service = await app.start(dataclasses.replace(config, db=address), background=False)
    try:
        assert (await service.scheduler.list_tasks(TaskQuery(), limit=0)).total == 40
    finally:
        await service.stop(0)


# -- the Python client's retries -------------------------------------------------------


async def _lose_the_first_answer(proxy: CuttingProxy, stub, call, stored: int) -> object:
    """Runs `call` with the server's answers swallowed until `stored` tasks are, then cuts the connection."""
    proxy.swallow = True
    running = asyncio.ensure_future(call())
    for _ in range(500):
        if await total(stub) == stored:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the call never reached the server")
    assert not running.done()
    proxy.cut()
    return await asyncio.wait_for(running, 10)


async def test_the_clients_retry_after_a_lost_answer_makes_no_second_task(service, stub):
    from taskhub.client import AsyncTaskHubClient, RetryPolicy, TaskHubClient

    proxy = CuttingProxy(service.grpc_target)
    target = await proxy.start()
    retry = RetryPolicy(max_attempts=10, initial_backoff=0.05, max_backoff=0.2)
    try:
        with TaskHubClient(target, retry=retry, timeout=10) as client:
            client_version = await asyncio.to_thread(client.get_version)  # connected through the proxy
            assert client_version is not None
            summary = await _lose_the_first_answer(
                proxy,
                stub,
                lambda: asyncio.to_thread(
                    client.enqueue, "documentAdditionOrUpdate", "movies", {"receivedDocuments": 1}
                ),
                stored=1,
            )
        assert summary.uid == 0 and proxy.connections >= 2  # answered by a retry, on a new connection
        assert await total(stub) == 1

        async with AsyncTaskHubClient(target, retry=retry, timeout=10) as aclient:
            await aclient.get_version()
            summaries = await _lose_the_first_answer(
                proxy,
                stub,
                lambda: aclient.enqueue_tasks([("documentAdditionOrUpdate", "books", {"receivedDocuments": 2})] * 2),
                stored=3,
            )
        assert [s.uid for s in summaries] == [1, 2]
        assert await total(stub) == 3
    finally:
        await proxy.close()


async def test_a_full_queue_still_answers_a_replay(config, clock):
    probe = app.open_store(config)  # whichever database the config names
    empty = probe.used_bytes()
    probe.close()
    service = await app.start(
        dataclasses.replace(config, max_task_db_size=str(empty + 64 * 1024), watch_retention=5),
        background=False,
        clock=clock,
    )
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            first = (await stub.EnqueueTask(request(key="first"))).task
            for n in range(5_000):
                try:
                    await stub.EnqueueTask(request(key=f"fill-{n}"))
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    break
            else:
                raise AssertionError("the queue never filled")
            # Full: a new key is refused, and records nothing; the replay stores nothing, so it is answered.
            assert (await error_of(stub.EnqueueTask(request(key="new"))))[1] == "no_space_left_on_device"
            assert (await stub.EnqueueTask(request(key="first"))).task == first
    finally:
        await service.stop(0)
