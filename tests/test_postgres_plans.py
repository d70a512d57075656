"""PostgreSQL's plans for what a start reads of the task table: its indexes, never the whole table.

A table filled faster than autovacuum's first pass (or by an import) has no statistics, and
the planner then reads every row, and sorts them, for each page of the index's build and for
the waiting and leased tasks. The store gathers statistics at start when there are none, and
after an import. These tests look at the plans PostgreSQL makes for the store's own statements.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from taskhub.server.model import TaskStatus, TaskType
from taskhub.server.storage.postgres.database import PostgresStorage
from taskhub.server.storage.postgres.leases import RELEASE_ALL
from taskhub.server.storage.postgres.tasks import INDEX_ROWS, WAITING

UPDATE = TaskType.DOCUMENT_ADDITION_OR_UPDATE
ROWS = 3_000


def plan(url: str, query: str, params: tuple = ()) -> str:
    """The plan PostgreSQL makes for `query` with `params` (EXPLAIN, not run), as JSON text."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"EXPLAIN (FORMAT JSON) {query}", params).fetchone()
        assert row is not None
        return json.dumps(row[0])


def assert_no_full_read(url: str) -> None:
    # A page of the index's build from the middle of the table, the waiting tasks, every lease let go.
    for query, params, index in (
        (INDEX_ROWS, (ROWS // 3, ROWS // 6), "tasks_pkey"),
        (WAITING, (), "tasks_waiting"),
        (RELEASE_ALL, (), "tasks_leased"),
    ):
        shown = plan(url, query, params)
        assert "Seq Scan" not in shown and index in shown, (query, shown)


@pytest.fixture
def url(postgres_cluster, request) -> str:
    return postgres_cluster.create_database(f"plans_{request.node.name[:40].lower()}")


def test_a_start_on_a_table_filled_before_any_statistics_reads_it_by_its_indexes(url):
    storage = PostgresStorage(url)
    with storage.transaction() as tx:  # a busy first minute: rows, and autovacuum not yet by
        tx.tasks.insert([("movies", UPDATE, {"receivedDocuments": i}, None) for i in range(ROWS)], 1)
    storage.close()
    PostgresStorage(url).close()  # the next start (a restart, another replica)
    assert_no_full_read(url)


def test_an_import_leaves_statistics_for_the_reads_after_it(url, tmp_path):
    source = PostgresStorage(url)
    with source.transaction() as tx:
        tasks = tx.tasks.insert([("movies", UPDATE, None, None) for _ in range(ROWS)], 1)
    source.close()
    target_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(target_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}_import"')
    imported = url + "_import"
    target = PostgresStorage(imported)
    with target.transaction() as tx:
        for task in tasks:
            task.status = TaskStatus.SUCCEEDED
        tx.tasks.load(((task, None) for task in tasks), len(tasks))
    assert_no_full_read(imported)
    target.close()
