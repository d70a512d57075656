"""The store's schema and its in-memory index: what SQL still indexes, migration, and the group commit's rows."""

from __future__ import annotations

import sqlite3

from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import Scope, Task, TaskQuery, TaskStatus, TaskType
from taskhub.server.storage.sqlite.lease_store import SCAN_CHUNK
from taskhub.server.storage.sqlite.rows import row_to_task
from taskhub.server.storage.sqlite.store import SCHEMA_VERSION, Store

OLD_INDEXES = [
    ("status", "uid"),
    ("type", "status"),
    ("index_uid", "uid"),
    ("canceled_by",),
    ("enqueued_at",),
    ("started_at",),
    ("finished_at",),
    ("lease",),
]


def task_indexes(path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(
            conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' AND sql IS NOT NULL"
            )
        )


def test_only_leased_tasks_are_indexed_in_sql(tmp_path):
    store = Store(tmp_path / "t.db")
    store.insert_tasks([("movies", TaskType.INDEX_CREATION, None)] * 3, 1)
    assert list(task_indexes(tmp_path / "t.db")) == ["idx_tasks_leased"]
    # The lease lookups use the partial index: `lease = ?` implies `lease IS NOT NULL`.
    plan = " ".join(
        row[-1]
        for row in store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT uid FROM tasks WHERE lease = ? AND status = ?", ("t", 2)
        )
    )
    assert "idx_tasks_leased" in plan
    store.close()


def test_a_version_1_database_loses_its_column_indexes_and_keeps_its_tasks(tmp_path):
    path = tmp_path / "v1.db"
    store = Store(path)
    store.insert_tasks([("movies", TaskType.INDEX_CREATION, None), ("books", TaskType.INDEX_DELETION, None)], 5)
    for columns in OLD_INDEXES:  # what version 1 created
        store.conn.execute(f"CREATE INDEX idx_tasks_{'_'.join(columns)} ON tasks ({', '.join(columns)})")
    store.conn.execute("DROP INDEX idx_tasks_leased")
    store.conn.execute("PRAGMA user_version=1")
    store.close()

    store = Store(path)
    assert list(task_indexes(path)) == ["idx_tasks_leased"]
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [t.index_uid for t in store.get_tasks([0, 1])] == ["movies", "books"]
    assert list(store.index.select(TaskQuery(index_uids=frozenset({"books"})))) == [1]
    store.close()


def test_a_row_decodes_every_column_into_its_own_field():
    # Each column a value no other column has: a field out of place cannot go unnoticed.
    row = (
        11,
        "movies",
        int(TaskStatus.CANCELED),
        int(TaskType.DOCUMENT_DELETION),
        12,
        '{"deletedDocuments":3}',
        '{"code":"x"}',
        13,
        14,
        15,
        16,
    )
    assert row_to_task(row) == Task(
        uid=11,
        index_uid="movies",
        status=TaskStatus.CANCELED,
        type=TaskType.DOCUMENT_DELETION,
        canceled_by=12,
        details={"deletedDocuments": 3},
        error={"code": "x"},
        enqueued_at=13,
        started_at=14,
        finished_at=15,
        seq=16,
    )
    assert row_to_task((1, None, 1, 1, None, None, None, 2, None, None, 3)).details is None


def test_get_tasks_answers_the_uids_that_exist_by_uid_on_both_read_paths(tmp_path):
    store = Store(tmp_path / "t.db")
    store.insert_tasks([(f"i-{uid}", TaskType.INDEX_CREATION, {"primaryKey": str(uid)}) for uid in range(100)], 1)
    # Up to 32 uids take a statement with a placeholder each; more take one json_each statement.
    for asked in ([], [7], [31, 3, 99, 500], list(range(40, 8, -1)), list(range(33)), [*range(0, 100, 2), 1000]):
        tasks = store.get_tasks(asked)
        expected = sorted(uid for uid in set(asked) if uid < 100)
        assert [t.uid for t in tasks] == expected
        assert [t.details for t in tasks] == [{"primaryKey": str(uid)} for uid in expected]
    store.close()


def test_group_commit_change_rows_replay_the_tasks_exactly(tmp_path):
    store = Store(tmp_path / "t.db")
    odd = {"primaryKey": 'id "quoted" \\ back\\slash, ünïcode, \u2028 and \n newline'}
    items = [
        ("movies", TaskType.INDEX_CREATION, odd),
        ("a-b_c", TaskType.INDEX_CREATION, {"primaryKey": None}),
        (None, TaskType.DUMP_CREATION, None),
    ]
    inserted = store.insert_tasks(items, 1_700_000_000_000_123).tasks
    replayed, deleted = store.changes_after(0, 10)
    assert replayed == inserted and not deleted
    store.close()


def test_a_reopened_store_reads_its_index_from_the_rows(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    store.insert_tasks(
        [(f"index-{i % 3}", TaskType.DOCUMENT_ADDITION_OR_UPDATE, {"receivedDocuments": 1}) for i in range(20)], 1
    )
    store.start_task(4, 2)
    store.close()
    store = Store(path)
    assert len(store.index.select(TaskQuery(statuses=frozenset({TaskStatus.ENQUEUED})))) == 19
    assert list(store.index.select(TaskQuery(statuses=frozenset({TaskStatus.PROCESSING})))) == [4]
    store.close()


def test_one_commit_may_change_a_task_twice_and_insert_many(tmp_path):
    store = Store(tmp_path / "t.db")
    tasks = store.insert_tasks(
        [("movies", TaskType.DOCUMENT_ADDITION_OR_UPDATE, {"receivedDocuments": 1})] * 12, 1
    ).tasks
    index = TaskIndex()
    started = [*tasks[:3]]
    for task in started:
        task.status, task.started_at = TaskStatus.PROCESSING, 5
    # New tasks, then a later state of one of them, in the same change set: the last one counts.
    books = store.insert_tasks([("books", TaskType.INDEX_CREATION, None)], 2).tasks
    index.apply([*books, *tasks, *started])
    assert list(index.select(TaskQuery(statuses=frozenset({TaskStatus.PROCESSING})))) == [0, 1, 2]
    assert list(index.select(TaskQuery(statuses=frozenset({TaskStatus.ENQUEUED})))) == list(range(3, 13))
    assert list(index.select(TaskQuery(after_started_at=4))) == [0, 1, 2]
    index.apply([tasks[0], *books], frozenset({0, 12}))  # deleted tasks come with their last state
    assert list(index.select(TaskQuery())) == list(range(1, 12))
    assert list(index.select(TaskQuery(index_uids=frozenset({"books"})))) == []
    store.close()


def test_a_lease_finds_the_head_past_many_blocked_tasks(tmp_path):
    store = Store(tmp_path / "t.db")
    store.insert_tasks([("busy", TaskType.INDEX_UPDATE, None)] * 150 + [("free", TaskType.INDEX_UPDATE, None)], 1)

    def lease(token: str) -> list[int]:
        return [
            t.uid
            for t in store.lease_batch(
                token=token, worker="w", types=None, index_uids=None, scope=None, max_tasks=10, now=2, duration=10
            )
        ]

    assert lease("a") == [0]  # `busy` is now processing: its 149 other tasks must wait
    assert lease("b") == [150]  # found past them, though the first reads hold only a few rows
    assert lease("c") == []
    store.close()


def test_a_worker_of_some_indexes_reads_only_their_tasks_and_swaps(tmp_path):
    store = Store(tmp_path / "t.db")
    others = [(f"other-{i % 50}", TaskType.INDEX_UPDATE, None) for i in range(3000)]
    swap = (None, TaskType.INDEX_SWAP, {"swaps": [{"indexes": ["mine", "theirs"]}]})
    store.insert_tasks(
        [*others, swap, ("mine", TaskType.INDEX_UPDATE, None), *others, ("solo", TaskType.INDEX_UPDATE, None)], 1
    )
    read: list[int] = []
    get_tasks = store.get_tasks
    store.get_tasks = lambda uids: read.extend(uids) or get_tasks(uids)

    def lease(token: str, **only) -> list[int]:
        read.clear()
        only = {"index_uids": None, "scope": None, **only}
        return [
            t.uid
            for t in store.lease_batch(token=token, worker="w", types=None, max_tasks=10, now=2, duration=10, **only)
        ]

    # Thousands of other indexes' tasks come first; a worker of `mine` never reads them. The swap
    # (uid 3000) names `mine` and is older, so it holds the `mine` task back, and this worker cannot take it.
    assert lease("a", index_uids=frozenset({"mine"})) == []
    assert set(read) == {3000, 3001}
    assert lease("b", scope=Scope(names=frozenset({"mine"}))) == []
    assert set(read) == {3000, 3001}
    assert lease("c", index_uids=frozenset({"mine", "theirs"})) == [3000]
    assert lease("d") == [0]  # an unfiltered worker still takes the oldest head
    assert lease("e", index_uids=frozenset({"solo"})) == [6002]
    # Busy indexes: task 0's comes from the index, the processing swap's from its row; then its own.
    assert set(read) == {3000, 6002}
    store.close()


def test_a_backlog_behind_a_busy_index_is_never_read(tmp_path):
    store = Store(tmp_path / "t.db")
    backlog = [("busy", TaskType.INDEX_UPDATE, None) for _ in range(3000)]
    held = [("held", TaskType.INDEX_DELETION, None), *(("held", TaskType.INDEX_UPDATE, None) for _ in range(3000))]
    store.insert_tasks([*backlog, *held, ("free", TaskType.INDEX_UPDATE, None)], 1)
    read: list[int] = []
    get_tasks = store.get_tasks
    store.get_tasks = lambda uids: read.extend(uids) or get_tasks(uids)

    def lease(token: str, **only) -> list[int]:
        read.clear()
        return [
            t.uid
            for t in store.lease_batch(
                token=token,
                worker="w",
                index_uids=None,
                scope=None,
                max_tasks=1,
                now=2,
                duration=10,
                **{"types": None, **only},
            )
        ]

    assert lease("a") == [0]  # `busy` runs its head: the 2,999 behind it wait
    # `held` heads with a deletion this worker does not take: its updates wait behind it, unread.
    assert lease("b", types=frozenset({TaskType.INDEX_UPDATE})) == [6001]
    assert len(read) <= 2 * SCAN_CHUNK
    assert lease("c") == [3000]  # an unfiltered worker takes the deletion, among the first rows it reads
    assert read[0] == 3000 and len(read) <= SCAN_CHUNK
    store.close()
