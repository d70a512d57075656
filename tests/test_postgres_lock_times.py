"""UNIT_LOCK's wait and hold are counted for every committed unit of work on PostgreSQL, and for no other."""

from __future__ import annotations

import pytest

from taskhub.server.model import TaskType
from taskhub.server.storage.postgres.database import PostgresStorage
from taskhub.server.storage.postgres.lock_times import UNIT_LOCK_TIMES


def test_each_committed_unit_counts_its_wait_and_its_hold_and_a_failed_one_does_not(postgres_cluster):
    storage = PostgresStorage(postgres_cluster.create_database("lock_times"))
    before = UNIT_LOCK_TIMES.snapshot()
    for _ in range(3):
        with storage.transaction() as tx:
            tx.tasks.insert([("movies", TaskType.DOCUMENT_ADDITION_OR_UPDATE, None, None)], 1)
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        tx.tasks.insert([("movies", TaskType.DOCUMENT_ADDITION_OR_UPDATE, None, None)], 1)
        raise RuntimeError("rolled back")
    after = UNIT_LOCK_TIMES.snapshot()
    storage.close()
    assert after["units"] - before["units"] == 3
    assert sum(after["hold_buckets"]) - sum(before["hold_buckets"]) == 3
    held, committing = after["hold_ns"] - before["hold_ns"], after["commit_ns"] - before["commit_ns"]
    assert held >= committing > 0  # the COMMIT is part of the hold
    assert after["wait_ns"] > before["wait_ns"]
