"""The SQLite storage's schema: what SQL still indexes, migration, rows, and what the index is built from."""

from __future__ import annotations

import sqlite3

from taskhub.server.index.memory import MemoryFinder
from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import Task, TaskQuery, TaskStatus, TaskType
from taskhub.server.storage.rows import row_to_task
from taskhub.server.storage.sqlite.database import SqliteStorage as Store
from taskhub.server.storage.sqlite.schema import SCHEMA_VERSION


def insert(store: Store, items: list, now: int) -> list[Task]:
    """Inserts (index uid, type, details) items, with no extra fields."""
    with store.transaction() as tx:
        return tx.tasks.insert([(*item, None) for item in items], now)


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


def test_only_leased_and_waiting_tasks_are_indexed_in_sql(tmp_path):
    store = Store(tmp_path / "t.db")
    insert(store, [("movies", TaskType.INDEX_CREATION, None)] * 3, 1)
    assert list(task_indexes(tmp_path / "t.db")) == ["idx_tasks_leased", "idx_tasks_waiting"]
    # Both partial: a task without a lease nor a runAt is in neither, so a plain enqueue writes no index page.
    in_waiting = "SELECT count(*) FROM tasks INDEXED BY idx_tasks_waiting WHERE run_at IS NOT NULL"
    assert store.conn.execute(in_waiting).fetchone()[0] == 0
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
    insert(store, [("movies", TaskType.INDEX_CREATION, None), ("books", TaskType.INDEX_DELETION, None)], 5)
    for columns in OLD_INDEXES:  # what version 1 created
        store.conn.execute(f"CREATE INDEX idx_tasks_{'_'.join(columns)} ON tasks ({', '.join(columns)})")
    store.conn.execute("DROP INDEX idx_tasks_leased")
    store.conn.execute("PRAGMA user_version=1")
    store.close()

    store = Store(path)
    assert sorted(task_indexes(path)) == ["idx_tasks_leased", "idx_tasks_waiting"]
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [t.index_uid for t in store.tasks.get_many([0, 1])] == ["movies", "books"]
    finder = MemoryFinder()
    finder.reload(store.reader())
    assert finder.uids(TaskQuery(index_uids=frozenset({"books"})), limit=10) == [1]
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
        '{"customMetadata":"m"}',
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
        extra={"customMetadata": "m"},
    )
    # A change logged before schema 5 has eleven columns, and no extra fields.
    legacy = row_to_task((1, None, 1, 1, None, None, None, 2, None, None, 3))
    assert legacy.details is None and legacy.extra is None


def test_get_tasks_answers_the_uids_that_exist_by_uid_on_both_read_paths(tmp_path):
    store = Store(tmp_path / "t.db")
    insert(store, [(f"i-{uid}", TaskType.INDEX_CREATION, {"primaryKey": str(uid)}) for uid in range(100)], 1)
    # Up to 32 uids take a statement with a placeholder each; more take one json_each statement.
    for asked in ([], [7], [31, 3, 99, 500], list(range(40, 8, -1)), list(range(33)), [*range(0, 100, 2), 1000]):
        tasks = store.tasks.get_many(asked)
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
    inserted = insert(store, items, 1_700_000_000_000_123)
    replayed = store.log.changes_after(0, 10)
    assert replayed.tasks == inserted and not replayed.deleted
    store.close()


def test_a_reopened_store_reads_its_index_from_the_rows(tmp_path):
    path = tmp_path / "t.db"
    store = Store(path)
    insert(
        store,
        [(f"index-{i % 3}", TaskType.DOCUMENT_ADDITION_OR_UPDATE, {"receivedDocuments": 1}) for i in range(20)],
        1,
    )
    with store.transaction() as tx:
        [task] = tx.tasks.get_many([4])
        task.status, task.started_at = TaskStatus.PROCESSING, 2
        tx.tasks.save([task])
    store.close()
    store = Store(path)
    finder = MemoryFinder()
    assert finder.reload(store.reader()) == 21  # 20 inserts and a start: the sequence number it stands at
    assert finder.count(TaskQuery(statuses=frozenset({TaskStatus.ENQUEUED}))) == 19
    assert finder.uids(TaskQuery(statuses=frozenset({TaskStatus.PROCESSING})), limit=10) == [4]
    store.close()


def test_one_commit_may_change_a_task_twice_and_insert_many(tmp_path):
    store = Store(tmp_path / "t.db")
    tasks = insert(store, [("movies", TaskType.DOCUMENT_ADDITION_OR_UPDATE, {"receivedDocuments": 1})] * 12, 1)
    index = TaskIndex()
    started = [*tasks[:3]]
    for task in started:
        task.status, task.started_at = TaskStatus.PROCESSING, 5
    # New tasks, then a later state of one of them, in the same change set: the last one counts.
    books = insert(store, [("books", TaskType.INDEX_CREATION, None)], 2)
    index.apply([*books, *tasks, *started])
    assert list(index.select(TaskQuery(statuses=frozenset({TaskStatus.PROCESSING})))) == [0, 1, 2]
    assert list(index.select(TaskQuery(statuses=frozenset({TaskStatus.ENQUEUED})))) == list(range(3, 13))
    assert list(index.select(TaskQuery(after_started_at=4))) == [0, 1, 2]
    index.apply([tasks[0], *books], frozenset({0, 12}))  # deleted tasks come with their last state
    assert list(index.select(TaskQuery())) == list(range(1, 12))
    assert list(index.select(TaskQuery(index_uids=frozenset({"books"})))) == []
    store.close()


def test_a_version_5_database_keeps_the_expired_attempts_of_unfinished_tasks(tmp_path):
    path = tmp_path / "v5.db"
    store = Store(path)
    insert(store, [("movies", TaskType.INDEX_CREATION, None)] * 3, 5)
    store.conn.execute("DROP INDEX idx_tasks_waiting")
    store.conn.execute("UPDATE tasks SET attempts = 2, status = CASE uid WHEN 2 THEN 3 ELSE status END")
    store.conn.execute('UPDATE tasks SET extra = \'{"customMetadata":"m"}\' WHERE uid = 1')
    store.conn.execute("PRAGMA user_version=5")
    store.close()

    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "idx_tasks_waiting" in task_indexes(path)
    assert [t.extra for t in store.tasks.get_many([0, 1, 2])] == [
        {"attempts": 2},
        {"customMetadata": "m", "attempts": 2},
        None,  # finished: its count no longer matters
    ]
    store.close()
