"""WatchTasks: every matching change in commit order, gapless resume (also across restarts), slow watchers."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc

from helpers import T, enqueue, error_of, finish, start
from taskhub.server import app
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc


async def read(stream, count: int) -> list[pb.WatchTasksResponse]:
    return [await asyncio.wait_for(stream.read(), timeout=5) for _ in range(count)]


def watch(stub, after: int | None = None, **filter_fields):
    request = pb.WatchTasksRequest(filter=task_pb2.TaskFilter(**filter_fields))
    if after is not None:
        request.after = after
    return stub.WatchTasks(request)


async def wait_for_watchers(service, count: int) -> None:
    for _ in range(200):
        if service.scheduler.hub.watchers == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{service.scheduler.hub.watchers} watchers, expected {count}")


async def test_changes_arrive_in_commit_order_with_gapless_sequences(service, stub):
    everything = watch(stub)
    movies = watch(stub, index_uids=task_pb2.IndexUidSet(index_uids=["movies"]))
    await wait_for_watchers(service, 2)
    await enqueue(stub, "movies")
    await enqueue(stub, "books")
    await start(service, 0)
    await finish(service, 0, details={"indexedDocuments": 10})
    seen = await read(everything, 4)
    assert [e.sequence for e in seen] == list(range(seen[0].sequence, seen[0].sequence + 4))
    assert [(e.task.uid, e.task.status) for e in seen] == [
        (0, T.TASK_STATUS_ENQUEUED),
        (1, T.TASK_STATUS_ENQUEUED),
        (0, T.TASK_STATUS_PROCESSING),
        (0, T.TASK_STATUS_SUCCEEDED),
    ]
    only_movies = await read(movies, 3)
    assert [e.sequence for e in only_movies] == [seen[0].sequence, seen[2].sequence, seen[3].sequence]
    everything.cancel()
    movies.cancel()


async def test_resume_gives_every_later_change_once(service, stub):
    first = watch(stub)
    await wait_for_watchers(service, 1)
    await enqueue(stub)
    last_seen = (await read(first, 1))[0].sequence
    first.cancel()
    # Changes made while nobody watches; 1 has an index of its own, to run alongside 0.
    await enqueue(stub, "books")
    await start(service, 0)
    await start(service, 1)
    resumed = watch(stub, after=last_seen)
    replayed = await read(resumed, 3)
    assert [e.sequence for e in replayed] == [last_seen + 1, last_seen + 2, last_seen + 3]
    assert [(e.task.uid, e.task.status) for e in replayed] == [
        (1, T.TASK_STATUS_ENQUEUED),
        (0, T.TASK_STATUS_PROCESSING),
        (1, T.TASK_STATUS_PROCESSING),
    ]
    # ...then live changes follow without a gap.
    await finish(service, 1)
    live = (await read(resumed, 1))[0]
    assert (live.sequence, live.task.uid, live.task.status) == (last_seen + 4, 1, T.TASK_STATUS_SUCCEEDED)
    resumed.cancel()


async def test_resume_across_a_restart(config, clock):
    service = await app.start(config, background=False, clock=clock)
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        await enqueue(stub)
        await enqueue(stub)
        await start(service, 0)
    await service.stop(0)  # task 0 was processing: the restart requeues it, a change too
    service = await app.start(config, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            stream = watch(stub, after=1)
            expected = [
                (2, 1, T.TASK_STATUS_ENQUEUED),
                (3, 0, T.TASK_STATUS_PROCESSING),
                (4, 0, T.TASK_STATUS_ENQUEUED),
            ]
            if service.scheduler.replica.shared:  # replicas (PostgreSQL): a start ends no lease, so no change 4
                expected = expected[:2]
            events = await read(stream, len(expected))
            assert [(e.sequence, e.task.uid, e.task.status) for e in events] == expected
            stream.cancel()
    finally:
        await service.stop(0)


async def test_deletions_are_events(service, stub):
    await enqueue(stub)
    await start(service, 0)
    await finish(service, 0)
    stream = watch(stub, uids=task_pb2.UidSet(uids=[0]))
    await wait_for_watchers(service, 1)
    await stub.DeleteTasks(pb.DeleteTasksRequest(filter=task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=[0]))))
    await service.scheduler.tick()
    event = (await read(stream, 1))[0]
    assert (event.task.uid, event.task.status, event.deleted) == (0, T.TASK_STATUS_SUCCEEDED, True)
    stream.cancel()


async def test_a_cursor_outside_the_history_is_refused(config, clock):
    service = await app.start(dataclasses.replace(config, watch_retention=3), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            for _ in range(6):
                await enqueue(stub)
            clock.now += 20_000_000
            await service.scheduler.tick()  # prunes all but the newest 3 changes: 4, 5, 6 remain
            code, reason, message = await error_of(watch(stub, after=1).read())
            assert (code, reason) == (grpc.StatusCode.OUT_OF_RANGE, "invalid_watch_cursor")
            assert message.startswith("Sequence number `1` is older than the kept history, which starts at `4`")
            assert [e.sequence for e in await read(watch(stub, after=3), 3)] == [4, 5, 6]
            code, reason, _ = await error_of(watch(stub, after=99).read())
            assert (code, reason) == (grpc.StatusCode.OUT_OF_RANGE, "invalid_watch_cursor")
    finally:
        await service.stop(0)


async def test_many_watchers_see_the_same_changes(service, stub):
    streams = [watch(stub) for _ in range(200)]
    await wait_for_watchers(service, 200)
    for _ in range(5):
        await enqueue(stub)
    expected = None
    for stream in streams:
        got = [(e.sequence, e.task.uid) for e in await read(stream, 5)]
        expected = expected or got
        assert got == expected
        stream.cancel()
    await wait_for_watchers(service, 0)


async def test_a_slow_watcher_is_cut_off_while_others_keep_up(config, clock):
    service = await app.start(dataclasses.replace(config, watch_buffer=16), background=False, clock=clock)
    try:
        # Without BDP probing the client's flow-control window stays small, so a reader that
        # stops reading soon stops the server's writes: the lag then shows in the hub's queue.
        async with grpc.aio.insecure_channel(service.grpc_target, options=[("grpc.http2.bdp_probe", 0)]) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            slow, fast = watch(stub), watch(stub)
            await wait_for_watchers(service, 2)
            received = []

            async def keep_up():
                async for event in fast:
                    received.append(event.sequence)
                    if len(received) == 1_500:
                        return

            reader = asyncio.ensure_future(keep_up())
            for _ in range(1_500):
                await enqueue(stub)
            await asyncio.wait_for(reader, 20)
            assert received == list(range(1, 1_501))
            # The slow one gets what was buffered, then a clear error; it never held the queue back.
            code, delivered = None, 0
            try:
                async for _ in slow:
                    delivered += 1
                    assert delivered < 1_500, "the slow watcher was never cut off"
            except grpc.aio.AioRpcError as error:
                code = error.code()
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            fast.cancel()
    finally:
        await service.stop(0)


async def test_the_stream_opens_with_its_cursor_before_any_change(service, stub):
    """Initial metadata says the watch is open and where it starts, so a gateway can answer 200 at once."""
    from taskhub.metadata import watch_cursor

    await enqueue(stub)
    await enqueue(stub)
    quiet = watch(stub, index_uids=task_pb2.IndexUidSet(index_uids=["nothing-here"]))
    assert watch_cursor(await asyncio.wait_for(quiet.initial_metadata(), 5)) == 2
    resumed = watch(stub, after=1)
    assert watch_cursor(await asyncio.wait_for(resumed.initial_metadata(), 5)) == 1
    assert [e.sequence for e in await read(resumed, 1)] == [2]
    # A refused cursor is an error before any header: no cursor announced.
    refused = watch(stub, after=7)
    assert watch_cursor(await refused.initial_metadata()) is None
    assert await refused.code() == grpc.StatusCode.OUT_OF_RANGE
    quiet.cancel()
    resumed.cancel()
