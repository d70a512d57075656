"""The PostgreSQL store's units of work: one round trip to open (BEGIN, the lock, the counters), one to end.

What the contract's suite cannot see from outside: the `stored_bytes` counter the queue-full rule reads
stays the sum of the rows' sizes through saves of rows read or not in the unit, saved twice, deleted and
saved again; and a statement that fails fails its unit whole (the counters kept in memory for it are
not written back) and the next unit runs on the same connection.
"""

from __future__ import annotations

import dataclasses
import secrets

import psycopg
import pytest

from taskhub.server.model import TaskStatus, TaskType
from taskhub.server.storage.contract import LeaseRecord
from taskhub.server.storage.postgres.database import PostgresStorage

UPDATE = TaskType.DOCUMENT_ADDITION_OR_UPDATE


@pytest.fixture
def url(postgres_cluster) -> str:
    return postgres_cluster.create_database(f"units_{secrets.token_hex(4)}")


@pytest.fixture
def storage(url):
    opened = PostgresStorage(url)
    yield opened
    opened.close()


def _stored(url: str) -> tuple[int, int]:
    """(the counter, the rows' sizes summed), read apart from the store."""
    with psycopg.connect(url) as conn:
        counter = conn.execute("SELECT value FROM meta WHERE key = 'stored_bytes'").fetchone()
        summed = conn.execute("SELECT COALESCE(SUM(size), 0) FROM tasks").fetchone()
    assert counter is not None and summed is not None
    return int(counter[0]), int(summed[0])


def test_stored_bytes_stay_the_rows_sizes_through_saves_and_deletes(storage, url):
    with storage.transaction() as tx:
        tx.tasks.insert([("movies", UPDATE, {"pad": "x" * 500}, None) for _ in range(6)], 1)
    with storage.transaction() as tx:  # read, then saved in the same unit
        tasks = tx.tasks.get_many([0, 1])
        for task in tasks:
            task.details = {"pad": "y" * 2_000}
        tx.tasks.save(tasks)
    assert _stored(url)[0] == _stored(url)[1]
    with storage.transaction() as tx:  # read in one unit, saved in the next
        [task] = tx.tasks.get_many([2])
    with storage.transaction() as tx:
        task.details = {"pad": "z"}
        tx.tasks.save([task])
    assert _stored(url)[0] == _stored(url)[1]
    with storage.transaction() as tx:  # some rows read, some not; one task twice in one save
        [three] = tx.tasks.get_many([3])
        four = dataclasses.replace(task, uid=4, details={"pad": "w" * 50})
        three.details = {"pad": "v" * 3_000}
        again = dataclasses.replace(three, details={"pad": "u"})
        tx.tasks.save([three, four, again])
        # Read back in the unit: what it saved last.
        assert tx.tasks.get_many([3])[0].details == {"pad": "u"}
        tx.tasks.save(tx.tasks.get_many([3, 4]))
    assert _stored(url)[0] == _stored(url)[1]
    with storage.transaction() as tx:  # saved twice in a unit, not read again between
        [one] = tx.tasks.get_many([1])
        one.details = {"pad": "t" * 4_000}
        tx.tasks.save([one])
        one.details = {"pad": "s"}
        tx.tasks.save([one])
    assert _stored(url)[0] == _stored(url)[1]
    with storage.transaction() as tx:  # a row deleted, then saved (twice) from a stale copy: nothing is there to grow
        [zero] = tx.tasks.get_many([0])
        zero.status, zero.finished_at = TaskStatus.SUCCEEDED, 2
        tx.tasks.save([zero])
        tx.tasks.delete([0], frozenset({TaskStatus.SUCCEEDED}))
        zero.details = {"pad": "r" * 1_000}
        tx.tasks.save([zero])
        zero.details = {"pad": "q" * 9_000}
        tx.tasks.save([zero])
    assert _stored(url)[0] == _stored(url)[1]
    with storage.transaction() as tx:
        [five] = tx.tasks.get_many([5])
        five.status, five.finished_at = TaskStatus.SUCCEEDED, 3
        tx.tasks.save([five])
        tx.tasks.delete([5], frozenset({TaskStatus.SUCCEEDED}))
    counter, summed = _stored(url)
    assert counter == summed and counter > 0


def test_a_statement_failing_fails_its_unit_whole_and_the_next_unit_runs(storage):
    with storage.transaction() as tx:
        tx.tasks.insert([("movies", UPDATE, {}, None)], 1)
    with pytest.raises(psycopg.errors.UniqueViolation), storage.transaction() as tx:
        tx.leases.insert(LeaseRecord("t", "w", 100, 30, "active"))
        [task] = tx.tasks.get_many([0])
        task.status = TaskStatus.PROCESSING
        tx.tasks.save([task], lease="t")
        tx.leases.insert(LeaseRecord("t", "w", 100, 30, "active"))
    with storage.transaction() as tx:  # nothing of it stayed, and the connection serves the next unit
        assert tx.leases.get("t") is None
        assert tx.tasks.get_many([0])[0].status == TaskStatus.ENQUEUED
        assert tx.log.last_seq() == 1
        tx.leases.insert(LeaseRecord("t", "w", 100, 30, "active"))
    with storage.transaction() as tx:
        assert tx.leases.get("t") is not None
