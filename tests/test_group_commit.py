"""The group commit: enqueues that arrive together share a transaction; under load, a few wait for more.

Each commit reads the scheduler's clock once, so tasks that shared a commit share
their `enqueued_at` (the fake clock moves at every reading).
"""

from __future__ import annotations

import asyncio
import threading
import time

from conftest import FakeClock
from taskhub.server.index.memory import MemoryFinder
from taskhub.server.model import TaskQuery, TaskType
from taskhub.server.rules.scheduler import Scheduler
from taskhub.server.storage.sqlite.database import SqliteStorage

ADD = TaskType.DOCUMENT_ADDITION_OR_UPDATE
DETAILS = {"receivedDocuments": 1}


async def started(tmp_path, window: float) -> Scheduler:
    scheduler = Scheduler(SqliteStorage(tmp_path / "tasks.db"), MemoryFinder(), clock=FakeClock(), commit_window=window)
    await scheduler.start(background=False)
    return scheduler


def enqueue(scheduler: Scheduler, name: str) -> asyncio.Task:
    return asyncio.create_task(scheduler.enqueue(ADD, name, DETAILS))


async def hold_store_thread(scheduler: Scheduler, seconds: float) -> asyncio.Task:
    """Keeps the store thread busy for `seconds`; answers once the hold has begun (a commit would go first)."""
    running = threading.Event()

    def hold() -> None:
        running.set()
        time.sleep(seconds)

    busy = asyncio.create_task(scheduler.call(hold))
    while not running.is_set():
        await asyncio.sleep(0.001)
    return busy


async def during_a_commit(scheduler: Scheduler) -> tuple[asyncio.Task, asyncio.Task]:
    """`a` commits alone while `b` arrives: the store thread is held busy until both are in."""
    busy = await hold_store_thread(scheduler, 0.3)
    a = enqueue(scheduler, "a")
    await asyncio.sleep(0.05)  # a's commit is queued behind the busy store thread
    b = enqueue(scheduler, "b")
    await busy
    await a
    return a, b


async def test_enqueues_of_one_loop_turn_share_a_commit(tmp_path):
    scheduler = await started(tmp_path, 0.005)
    tasks = await asyncio.gather(*(scheduler.enqueue(ADD, f"i{n}", DETAILS) for n in range(10)))
    assert [t.uid for t in tasks] == list(range(10))
    assert len({t.enqueued_at for t in tasks}) == 1
    await scheduler.stop()


async def test_a_lone_producer_never_waits_out_the_window(tmp_path):
    scheduler = await started(tmp_path, 30.0)
    async with asyncio.timeout(5):  # one commit after another, each alone: no window in between
        tasks = [await scheduler.enqueue(ADD, "solo", DETAILS) for _ in range(5)]
    assert len({t.enqueued_at for t in tasks}) == 5
    await scheduler.stop()


async def test_an_enqueue_that_arrived_during_a_commit_waits_for_company(tmp_path):
    scheduler = await started(tmp_path, 30.0)
    a, b = await during_a_commit(scheduler)
    await asyncio.sleep(0.2)
    assert not b.done()  # one waits, and one shared the last commit: it waits for a second
    c = enqueue(scheduler, "c")
    async with asyncio.timeout(5):  # two wait now: they commit at once, not after the window
        b_task, c_task = await asyncio.gather(b, c)
    assert b_task.enqueued_at == c_task.enqueued_at != a.result().enqueued_at
    await scheduler.stop()


async def test_the_window_bounds_the_wait(tmp_path):
    scheduler = await started(tmp_path, 0.2)
    a, b = await during_a_commit(scheduler)
    async with asyncio.timeout(5):
        alone = await b  # nobody joined: committed when the window ended
    assert alone.enqueued_at != a.result().enqueued_at
    await scheduler.stop()


async def test_stopping_commits_enqueues_still_waiting_for_company(tmp_path):
    scheduler = await started(tmp_path, 30.0)
    a, b = await during_a_commit(scheduler)
    await asyncio.sleep(0.05)
    assert not b.done()
    await scheduler.stop()
    async with asyncio.timeout(5):
        assert (await b).uid == 1


async def test_a_waiting_commit_goes_before_other_waiting_writes(tmp_path):
    # Producers wait on commits; a lease or a report queued earlier runs after the commit.
    scheduler = await started(tmp_path, 0.0)
    ran = []
    for owner, name in ((scheduler.storage.tasks, "insert"), (scheduler.leasing, "_lease")):
        method = getattr(owner, name)

        def recorded(*args, _method=method, _name=name, **kwargs):
            ran.append(_name)
            return _method(*args, **kwargs)

        setattr(owner, name, recorded)
    busy = await hold_store_thread(scheduler, 0.2)
    lease = asyncio.create_task(scheduler.lease(worker="w"))
    await asyncio.sleep(0.02)  # the lease is queued
    task = await enqueue(scheduler, "a")
    await busy
    assert (await lease).tasks[0].uid == task.uid  # the lease ran second, and found the task
    assert ran == ["insert", "_lease"]
    await scheduler.stop()


async def test_a_watch_opened_before_a_commit_sees_it_though_commits_go_first(tmp_path):
    # The watch's starting cursor is read in the commits' lane: the later commit cannot overtake it.
    scheduler = await started(tmp_path, 0.0)
    busy = await hold_store_thread(scheduler, 0.2)
    watch = scheduler.watch_tasks(TaskQuery())
    first = asyncio.ensure_future(watch.__anext__())
    await asyncio.sleep(0.02)  # subscribed, its cursor read queued behind the hold
    task = await enqueue(scheduler, "a")
    await busy
    event = await asyncio.wait_for(first, 5)
    assert event.task.uid == task.uid
    await watch.aclose()
    await scheduler.stop()
