"""How much a lease reads to find its batch: busy indexes and other workers' indexes are skipped unread.

Tasks go in by enqueue and out by lease (public paths); the rows a lease reads are counted at the
storage's task table, under both finders (the in-memory index and plain SQL).
"""

from __future__ import annotations

import pytest

from taskhub.server.index.memory import MemoryFinder
from taskhub.server.model import Scope, TaskType
from taskhub.server.rules.batching import SCAN_CHUNK
from taskhub.server.rules.scheduler import Scheduler
from taskhub.server.storage.sqlite.database import SqliteStorage
from taskhub.server.storage.sqlite.finder import SqlFinder

FINDERS = {"memory": lambda path: MemoryFinder(), "sql": SqlFinder}


@pytest.fixture(params=sorted(FINDERS))
async def queue(request, tmp_path):
    path = str(tmp_path / "t.db")
    storage = SqliteStorage(path)
    finder = FINDERS[request.param](path)
    scheduler = Scheduler(storage, finder, snapshots_dir=str(tmp_path), dumps_dir=str(tmp_path))
    await scheduler.start(background=False)
    read: list[int] = []
    get_many = storage.tasks.get_many

    def counted(uids, statuses=None):
        uids = list(uids)
        read.extend(uids)
        return get_many(uids, statuses)

    storage.tasks.get_many = counted
    yield scheduler, read
    await scheduler.stop()
    finder.close()
    storage.close()


async def enqueue(scheduler: Scheduler, items: list) -> None:
    for start in range(0, len(items), 1_000):
        await scheduler.enqueue_many(
            [(type_, index_uid, details) for index_uid, type_, details in items[start : start + 1_000]]
        )


async def lease(queue, max_tasks: int = 10, **only) -> list[int]:
    scheduler, read = queue
    read.clear()
    leased = await scheduler.lease(worker="w", max_tasks=max_tasks, **only)
    return [] if leased is None else [t.uid for t in leased.tasks]


async def test_a_lease_finds_the_head_past_many_blocked_tasks(queue):
    await enqueue(queue[0], [("busy", TaskType.INDEX_UPDATE, None)] * 150 + [("free", TaskType.INDEX_UPDATE, None)])
    assert await lease(queue) == [0]  # `busy` is now processing: its 149 other tasks must wait
    assert await lease(queue) == [150]  # found past them, though the first reads hold only a few rows
    assert await lease(queue) == []


async def test_a_worker_of_some_indexes_reads_only_their_tasks_and_swaps(queue):
    others = [(f"other-{i % 50}", TaskType.INDEX_UPDATE, None) for i in range(3000)]
    swap = (None, TaskType.INDEX_SWAP, {"swaps": [{"indexes": ["mine", "theirs"]}]})
    await enqueue(
        queue[0], [*others, swap, ("mine", TaskType.INDEX_UPDATE, None), *others, ("solo", TaskType.INDEX_UPDATE, None)]
    )
    read = queue[1]
    # Thousands of other indexes' tasks come first; a worker of `mine` never reads them. The swap
    # (uid 3000) names `mine` and is older, so it holds the `mine` task back, and this worker cannot take it.
    assert await lease(queue, index_uids=frozenset({"mine"})) == []
    assert set(read) == {3000, 3001}
    assert await lease(queue, scope=Scope(names=frozenset({"mine"}))) == []
    assert set(read) == {3000, 3001}
    assert await lease(queue, index_uids=frozenset({"mine", "theirs"})) == [3000]
    assert await lease(queue) == [0]  # an unfiltered worker still takes the oldest head
    assert await lease(queue, index_uids=frozenset({"solo"})) == [6002]
    # Busy indexes: task 0's comes from the finder, the processing swap's from its row; then its own.
    assert set(read) == {3000, 6002}


async def test_a_backlog_behind_a_busy_index_is_never_read(queue):
    backlog = [("busy", TaskType.INDEX_UPDATE, None) for _ in range(3000)]
    held = [("held", TaskType.INDEX_DELETION, None), *(("held", TaskType.INDEX_UPDATE, None) for _ in range(3000))]
    await enqueue(queue[0], [*backlog, *held, ("free", TaskType.INDEX_UPDATE, None)])
    read = queue[1]
    assert await lease(queue, max_tasks=1) == [0]  # `busy` runs its head: the 2,999 behind it wait
    # `held` heads with a deletion this worker does not take: its updates wait behind it, unread.
    assert await lease(queue, max_tasks=1, types=frozenset({TaskType.INDEX_UPDATE})) == [6001]
    assert len(read) <= 2 * SCAN_CHUNK
    # An unfiltered worker takes the deletion, among the first rows it reads.
    assert await lease(queue, max_tasks=1) == [3000]
    assert read[0] == 3000 and len(read) <= SCAN_CHUNK
