"""The storage contract's suite for batches (BatchTable, BatchFinder), over every opener of the main suite.

Each test names the guarantee it checks from the contract's docstrings.
"""

from __future__ import annotations

import random
import sqlite3

import pytest
import tests.test_storage_contract as contract
from tests.test_storage_contract import OPENERS, SPAWN, insert, run_together

from taskhub.server.batch import Batch, BatchQuery, ProgressStep
from taskhub.server.model import Scope, TaskStatus, TaskType
from taskhub.server.storage.contract import LeaseRecord, Storage

UPDATE = TaskType.DOCUMENT_ADDITION_OR_UPDATE


new_database = contract.new_database  # the suite's fixture: a database of each kind it opens


@pytest.fixture
def database(new_database) -> tuple[str, str]:
    """(kind, address) of a fresh database, of each kind the contract suite opens."""
    kind, make = new_database
    return kind, make()


@pytest.fixture
def storage(database):
    kind, address = database
    opened = OPENERS[kind](address)
    yield opened
    opened.close()


def new_batch(**fields) -> Batch:
    values = {
        "uid": -1,
        "started_at": 10,
        "strategy": "batched all enqueued tasks",
        "total": 1,
        "statuses": {TaskStatus.PROCESSING: 1},
        "types": {UPDATE: 1},
        "index_uids": {"movies": 1},
        "details": {"receivedDocuments": 1, "indexedDocuments": None},
        "enqueued_first": 1,
        "enqueued_last": 1,
        "index_uid": "movies",
        "progress": [],
    }
    values.update(fields)
    return Batch(**values)


def _open_batches(kind: str, address: str, count: int, go, results) -> None:
    opened = OPENERS[kind](address)
    go.wait()
    uids = []
    for _ in range(count):
        with opened.transaction() as tx:
            uids.append(tx.batches.insert(new_batch(), []).uid)
    opened.close()
    results.put(uids)


def test_batch_uids_come_from_zero_in_commit_order_never_reused_across_processes(database):
    kind, address = database
    OPENERS[kind](address).close()
    go, results = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_open_batches, args=(kind, address, 20, go, results)) for _ in range(2)]
    run_together(*procs)
    go.set()
    got = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert sorted(got[0] + got[1]) == list(range(40))
    assert all(seq == sorted(seq) for seq in got)
    opened = OPENERS[kind](address)
    with opened.transaction() as tx:
        tx.batches.forget_tasks([])
        assert tx.batches.next_uid() == 40 and tx.batches.count() == 40
    opened.close()


def test_insert_get_save_round_trip_every_field_and_details_key_order(storage):
    insert(storage, 2)
    details = {"receivedDocuments": 2, "indexedDocuments": None, "primaryKey": "id", "a": {"z": None, "b": 1}}
    with storage.transaction() as tx:
        batch = tx.batches.insert(
            new_batch(total=2, details=details, lease="tok", worker="w1", lease_state="active", enqueued_last=5), [0, 1]
        )
        assert batch.uid == 0
        tx.leases.insert(LeaseRecord("tok", "w1", 100, 10, "active", batch_uid=0))
    with storage.transaction() as tx:
        got = tx.batches.get(0)
        assert got == batch and list(got.details) == list(details) and list(got.details["a"]) == ["z", "b"]
        assert tx.leases.get("tok").batch_uid == 0
        got.statuses = {TaskStatus.SUCCEEDED: 1, TaskStatus.FAILED: 1}
        got.details = {"receivedDocuments": 2, "indexedDocuments": 2}
        got.finished_at, got.lease_state, got.progress = 20, "completed", None
        tx.batches.save(got)
    reader = storage.reader()
    try:
        assert reader.batches.get(0) == got and got.duration == 10
        assert reader.batches.get(1) is None
    finally:
        reader.close()


def test_a_batch_written_in_a_unit_that_raises_is_rolled_back_with_its_tasks(storage):
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        [task] = tx.tasks.insert([("movies", UPDATE, None, None)], 1)
        tx.batches.insert(new_batch(), [task.uid])
        raise RuntimeError("midway")
    with storage.transaction() as tx:
        assert tx.batches.next_uid() == 0 and tx.batches.count() == 0 and tx.batches.get(0) is None
        assert tx.batches.batches_of([0]) == []


def test_membership_adds_and_forgets_tasks_deleting_only_emptied_batches(storage):
    insert(storage, 4)
    with storage.transaction() as tx:
        tx.batches.insert(new_batch(), [0, 1])
        tx.batches.insert(new_batch(), [1, 2])
        tx.batches.add_tasks(1, [3, 2])
        assert tx.batches.task_uids_of([1]) == [1, 2, 3]
        assert tx.batches.task_uids_of([0, 1]) == [0, 1, 2, 3]
        assert tx.batches.batches_of([1]) == [0, 1] and tx.batches.batches_of([3]) == [1]
        before = tx.batches.get(1)
        assert tx.batches.forget_tasks([0, 1]) == [0]
        assert tx.batches.get(0) is None and tx.batches.count() == 1
        assert tx.batches.get(1) == before  # its counts stay as they were
        assert tx.batches.task_uids_of([0, 1]) == [2, 3]
        assert tx.batches.forget_tasks([2, 3]) == [1] and tx.batches.count() == 0


def test_progress_while_open_and_none_once_ended_and_open_uids(storage):
    with storage.transaction() as tx:
        a = tx.batches.insert(new_batch(), [])
        tx.batches.insert(new_batch(), [])
        assert tx.batches.open_uids() == [0, 1]
        assert tx.batches.get(0).progress == []
        steps = [ProgressStep("processing tasks", 0, 2), ProgressStep("indexing", 50, 100)]
        tx.batches.set_progress(0, steps)
        assert tx.batches.get(0).progress == steps
        a.finished_at, a.progress = 30, None
        tx.batches.save(a)
        assert tx.batches.get(0).progress is None and tx.batches.open_uids() == [1]
        a.finished_at = None  # were it reopened, the old report is gone
        tx.batches.save(a)
        assert tx.batches.get(0).progress == []


def test_a_page_of_batches_stops_at_its_byte_budget_but_always_holds_one(storage):
    with storage.transaction() as tx:
        for _ in range(4):
            tx.batches.insert(new_batch(), [])
        batches, cut = tx.batches.get_page([3, 2, 1], budget=1)
        assert ([b.uid for b in batches], cut) == ([3], 2)
        batches, cut = tx.batches.get_page([0, 2, 9], budget=10**9)
        assert ([b.uid for b in batches], cut) == ([0, 2], None)


def test_a_schema_5_database_opens_with_no_batches_and_its_tasks_unchanged(tmp_path):
    path = tmp_path / "old.db"
    old = OPENERS["sqlite"](path)
    insert(old, 3)
    with old.transaction() as tx:
        tx.leases.insert(LeaseRecord("old", "w", 1, 1, "completed"))
        before = tx.tasks.get_many([0, 1, 2])
    old.close()
    conn = sqlite3.connect(path)
    for table in ("batches", "batch_tasks", "batch_progress"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("ALTER TABLE leases DROP COLUMN batch_uid")
    conn.execute("DELETE FROM meta WHERE key IN ('next_batch_uid', 'batch_count')")
    conn.execute("PRAGMA user_version=5")
    conn.commit()
    conn.close()
    reopened = OPENERS["sqlite"](path)
    try:
        with reopened.transaction() as tx:
            assert tx.tasks.get_many([0, 1, 2]) == before
            assert tx.batches.next_uid() == 0 and tx.batches.count() == 0 and tx.batches.open_uids() == []
            assert tx.leases.get("old").batch_uid is None
            assert tx.batches.insert(new_batch(), [0]).uid == 0
    finally:
        reopened.close()


# -- BatchFinder against the domain's own rule ---------------------------------

STATUSES = list(TaskStatus)
TYPES = [UPDATE, TaskType.SETTINGS_UPDATE, TaskType.TASK_CANCELATION, TaskType.INDEX_CREATION]


def _random_batches(rng: random.Random, count: int) -> list[tuple[Batch, list[int]]]:
    made = []
    for _ in range(count):
        index = rng.choice(["movies", "books", "mov2", None])
        statuses = {s: rng.randint(1, 3) for s in rng.sample(STATUSES, rng.randint(1, 2))}
        types = {t: 1 for t in rng.sample(TYPES, rng.randint(1, 2))}
        first = rng.randint(0, 50)
        started = first + rng.randint(0, 50)
        finished = None if TaskStatus.PROCESSING in statuses else started + rng.randint(0, 50)
        made.append(
            (
                new_batch(
                    statuses=statuses,
                    types=types,
                    index_uid=index,
                    enqueued_first=first,
                    enqueued_last=first + rng.randint(0, 30),
                    started_at=started,
                    finished_at=finished,
                    progress=[] if finished is None else None,
                ),
                sorted(rng.sample(range(60), rng.randint(1, 4))),
            )
        )
    return made


def _random_query(rng: random.Random) -> BatchQuery:
    def maybe(make):
        return make() if rng.random() < 0.3 else None

    return BatchQuery(
        batch_uids=maybe(lambda: frozenset(rng.sample(range(40), rng.randint(0, 10)))),
        task_uids=maybe(lambda: frozenset(rng.sample(range(60), rng.randint(0, 5)))),
        index_uids=maybe(lambda: frozenset(rng.sample(["movies", "books", "mov2"], rng.randint(0, 2)))),
        statuses=maybe(lambda: frozenset(rng.sample(STATUSES, rng.randint(0, 2)))),
        types=maybe(lambda: frozenset(rng.sample(TYPES, rng.randint(0, 2)))),
        before_enqueued_at=maybe(lambda: rng.randint(0, 80)),
        after_enqueued_at=maybe(lambda: rng.randint(0, 80)),
        before_started_at=maybe(lambda: rng.randint(0, 100)),
        after_started_at=maybe(lambda: rng.randint(0, 100)),
        before_finished_at=maybe(lambda: rng.randint(0, 150)),
        after_finished_at=maybe(lambda: rng.randint(0, 150)),
        scope=maybe(lambda: Scope(frozenset({"books"}), ("mov",))),
    )


def test_the_finder_answers_as_the_domain_rule_for_every_filter_page_and_order(storage: Storage):
    rng = random.Random(22)
    made = _random_batches(rng, 40)
    with storage.transaction() as tx:
        for batch, members in made:
            tx.batches.insert(batch, members)
    reader = storage.reader()
    try:
        for _ in range(400):
            query = _random_query(rng)
            limit, reverse = rng.randint(0, 8), rng.random() < 0.5
            from_uid = rng.choice([None, rng.randint(0, 45)])
            expected = [b.uid for b, members in made if query.matches(b, set(members))]
            page = sorted(expected, reverse=not reverse)
            if from_uid is not None:
                page = [u for u in page if (u >= from_uid if reverse else u <= from_uid)]
            assert reader.batch_finder.page(query, limit=limit, from_uid=from_uid, reverse=reverse) == (
                page[: limit + 1],
                len(expected),
            ), query
    finally:
        reader.close()
