"""The storage contract's suite: every implementation must pass it (taskhub.server.storage.contract).

Each test names the guarantee it checks from the contract's docstrings. The concurrency
guarantees are checked with two storages on one database in two processes. A new
implementation joins by adding its opener to OPENERS (and a fixture that makes a database).
"""

from __future__ import annotations

import itertools
import multiprocessing
import secrets
import shutil
import subprocess
import time

import pytest

from taskhub.server.model import CustomType, KeyRecord, Task, TaskStatus, TaskType
from taskhub.server.storage.contract import NO_LEADER, Changes, Leader, LeaseRecord, Storage, StorageFull
from taskhub.server.storage.postgres.database import PostgresStorage
from taskhub.server.storage.sqlite.database import SqliteStorage


def open_sqlite(address: str, **options) -> Storage:
    return SqliteStorage(address, **options)


def open_postgres(address: str, **options) -> Storage:
    return PostgresStorage(address, **options)


# kind -> opener(address, **options); options: max_bytes.
OPENERS = {"sqlite": open_sqlite, "postgres": open_postgres}
SPAWN = multiprocessing.get_context("spawn")
UPDATE = TaskType.DOCUMENT_ADDITION_OR_UPDATE
_NAMES = itertools.count()


@pytest.fixture(params=sorted(OPENERS))
def new_database(request, tmp_path):
    """Makes fresh databases of one kind: (kind, a function answering a new address each call)."""
    kind = request.param
    if kind == "postgres":
        cluster = request.getfixturevalue("postgres_cluster")
        # A random part too: this module may be imported twice (by pytest and by a test module beside it).
        return kind, lambda: cluster.create_database(f"contract_{next(_NAMES)}_{secrets.token_hex(4)}")
    return kind, lambda: str(tmp_path / f"contract-{next(_NAMES)}.db")


@pytest.fixture
def database(new_database) -> tuple[str, str]:
    """(kind, address) of a fresh database."""
    kind, make = new_database
    return kind, make()


@pytest.fixture
def storage(database):
    kind, address = database
    opened = OPENERS[kind](address)
    yield opened
    opened.close()


def insert(storage: Storage, count: int, now: int = 1, index_uid: str | None = "movies") -> list[Task]:
    with storage.transaction() as tx:
        return tx.tasks.insert([(index_uid, UPDATE, {"receivedDocuments": i}, None) for i in range(count)], now)


def all_changes(storage: Storage) -> Changes:
    reader = storage.reader()
    try:
        return reader.log.changes_after(0, 1_000_000)
    finally:
        reader.close()


# -- in another process -----------------------------------------------------


def _insert_many(kind: str, address: str, units: int, per_unit: int, go, results) -> None:
    storage = OPENERS[kind](address)
    go.wait()  # a barrier: both processes have opened the database before either writes
    uids = []
    for _ in range(units):
        with storage.transaction() as tx:
            uids.append([t.uid for t in tx.tasks.insert([("movies", UPDATE, None, None)] * per_unit, 1)])
        time.sleep(0.005)  # between units, so the other process's units get their turns
    storage.close()
    results.put(uids)


def _claim(kind: str, address: str, name: str, uids: list[int], go, results) -> None:
    """Claims each task if it still waits: read, decide, write, in one unit of work."""
    storage = OPENERS[kind](address)
    go.wait()
    won = []
    for uid in uids:
        with storage.transaction() as tx:
            task = tx.tasks.get(uid)
            if task is not None and task.status == TaskStatus.ENQUEUED:
                time.sleep(0.001)  # widen the window between the read and the write
                task.status, task.started_at = TaskStatus.PROCESSING, 2
                tx.leases.insert(LeaseRecord(f"{name}-{uid}", name, 10, 10, "active"))
                tx.tasks.save([task], lease=f"{name}-{uid}")
                won.append(uid)
        time.sleep(0.002)  # between units, so the other process's units get their turns
    storage.close()
    results.put((name, won))


def _hold_open(kind: str, address: str, inserted, release) -> None:
    """Inserts a task in a unit of work and keeps it open until told."""
    storage = OPENERS[kind](address)
    with storage.transaction() as tx:
        tx.tasks.insert([("held", UPDATE, None, None)], 1)
        inserted.set()
        release.wait(10)
    storage.close()


def run_together(*processes) -> None:
    for process in processes:
        process.start()


# -- Transaction: units of work are serializable, across processes ------------


def test_units_from_two_processes_never_interleave_uids_or_sequence_numbers(database):
    kind, address = database
    OPENERS[kind](address).close()  # created before either process opens it
    go, results = SPAWN.Barrier(2), SPAWN.Queue()
    workers = [SPAWN.Process(target=_insert_many, args=(kind, address, 40, 5, go, results)) for _ in range(2)]
    run_together(*workers)
    got = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    units = [unit for uids in got for unit in uids]
    # The two processes' units interleaved (else this checked nothing concurrent): neither has all of the first half.
    firsts = [{unit[0] for unit in uids} for uids in got]
    assert all(any(uid >= 200 for uid in starts) and any(uid < 200 for uid in starts) for starts in firsts)
    # Each unit's tasks have consecutive uids; no uid is given twice; together they are 0..399.
    assert all(unit == list(range(unit[0], unit[0] + 5)) for unit in units)
    assert sorted(uid for unit in units for uid in unit) == list(range(400))
    storage = OPENERS[kind](address)
    try:
        changes = all_changes(storage)
        # ChangeLog: sequence numbers in commit order with no gap, across both processes.
        assert [t.seq for t in changes.tasks] == list(range(1, 401))
        # Commit order: each unit's changes are contiguous (its uids in one run of sequence numbers).
        by_uid = {t.uid: t.seq for t in changes.tasks}
        assert all(by_uid[unit[-1]] - by_uid[unit[0]] == 4 for unit in units)
        assert storage.reader().log.last_seq() == 400
    finally:
        storage.close()


def test_a_read_then_write_in_one_unit_holds_against_another_process(database):
    """Two processes claim the same tasks, each reading a task's status and writing it in one unit:
    serializable units mean each task is claimed exactly once."""
    kind, address = database
    storage = OPENERS[kind](address)
    uids = [t.uid for t in insert(storage, 60)]
    go, results = SPAWN.Barrier(2), SPAWN.Queue()
    # From both ends: they meet in the middle, where both try to claim the same tasks at the same time.
    workers = [
        SPAWN.Process(target=_claim, args=(kind, address, name, order, go, results))
        for name, order in (("a", uids), ("b", uids[::-1]))
    ]
    run_together(*workers)
    won = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(30)
    assert sorted(won["a"] + won["b"]) == uids
    assert won["a"] and won["b"], "the two processes never raced: the test checked nothing concurrent"
    with storage.transaction() as tx:
        held = {t.uid for token in (f"a-{u}" for u in won["a"]) for t in tx.leases.tasks_of(token)}
    assert held == set(won["a"])
    storage.close()


def test_a_commit_is_seen_only_once_made_and_then_by_every_process(database):
    kind, address = database
    storage = OPENERS[kind](address)
    reader = storage.reader()
    inserted, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold_open, args=(kind, address, inserted, release))
    holder.start()
    try:
        assert inserted.wait(30)
        # Not before commit: neither the row nor its change nor its sequence number.
        assert reader.tasks.get(0) is None
        assert reader.log.changes_after(0, 10).tasks == []
        assert reader.log.last_seq() == 0
    finally:
        release.set()
        holder.join(30)
    # Once committed: a reader sees it, and so does a unit of work begun after.
    assert reader.tasks.get(0).index_uid == "held"
    assert [t.uid for t in reader.log.changes_after(0, 10).tasks] == [0]
    with storage.transaction() as tx:
        assert tx.tasks.get(0) is not None
        assert tx.tasks.next_uid() == 1
    reader.close()
    storage.close()


# -- Transaction: atomicity ---------------------------------------------------


def test_a_unit_that_raises_leaves_nothing(storage):
    insert(storage, 2)
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        tx.tasks.insert([("books", UPDATE, None, None)], 5)
        [task] = tx.tasks.get_many([0])
        task.status = TaskStatus.PROCESSING
        tx.tasks.save([task], lease="t")
        tx.leases.insert(LeaseRecord("t", "w", 10, 10, "active"))
        tx.tasks.save_matches(2, [0, 1])
        raise RuntimeError("midway")
    with storage.transaction() as tx:
        assert tx.tasks.next_uid() == 2 and tx.tasks.count() == 2
        assert tx.tasks.get(0).status == TaskStatus.ENQUEUED
        assert tx.leases.get("t") is None and tx.tasks.matched_uids(2) == []
        assert tx.log.last_seq() == 2
        assert tx.changes == Changes()


def test_a_unit_sees_its_own_writes_and_reports_its_changes_in_order(storage):
    with storage.transaction() as tx:
        [task] = tx.tasks.insert([("movies", UPDATE, None, None)], 1)
        assert tx.tasks.get(task.uid) == task
        started = tx.tasks.get(task.uid)  # a new object: the logged one is the one given to insert
        started.status, started.started_at = TaskStatus.PROCESSING, 2
        tx.tasks.save([started])
        assert tx.tasks.get(task.uid).status == TaskStatus.PROCESSING
        assert [(t.uid, t.seq, t.status) for t in tx.changes.tasks] == [
            (0, 1, TaskStatus.ENQUEUED),
            (0, 2, TaskStatus.PROCESSING),
        ]
    assert all_changes(storage).tasks == [
        Task(0, "movies", TaskStatus.ENQUEUED, UPDATE, 1, seq=1),
        Task(0, "movies", TaskStatus.PROCESSING, UPDATE, 1, started_at=2, seq=2),
    ]


def test_extra_fields_are_kept_in_order_through_rows_saves_changes_and_reopening(database):
    kind, address = database
    storage = OPENERS[kind](address)
    extra = {"customMetadata": "m", "big": 2**64 + 1, "nested": {"z": 1, "a": [None]}}
    with storage.transaction() as tx:
        [task] = tx.tasks.insert([("movies", UPDATE, None, extra)], 1)
        plain = tx.tasks.insert([("movies", UPDATE, None, None)], 1)[0]
    with storage.transaction() as tx:
        started = tx.tasks.get(task.uid)
        started.status, started.extra = TaskStatus.PROCESSING, {**started.extra, "attempts": 1}
        tx.tasks.save([started])
    storage.close()
    storage = OPENERS[kind](address)
    try:
        with storage.transaction() as tx:
            stored = tx.tasks.get(task.uid)
            assert list(stored.extra.items()) == [*extra.items(), ("attempts", 1)]
            assert tx.tasks.get(plain.uid).extra is None
        logged = all_changes(storage).tasks
        assert [t.extra for t in logged] == [extra, None, {**extra, "attempts": 1}]
        assert list(logged[0].extra) == ["customMetadata", "big", "nested"]
    finally:
        storage.close()


def _register(kind: str, address: str, names: list[str], go, results) -> None:
    storage = OPENERS[kind](address)
    try:
        go.wait()
        with storage.transaction() as tx:
            results.put(tx.task_types.register(names))
    finally:
        storage.close()


def test_task_types_keep_their_codes_across_opens_and_processes(database):
    """TaskTypeTable: a name keeps its code for the database's life, and no two names share one, across
    every storage on the database; tasks of a registered type read back as it, by every storage."""
    kind, address = database
    storage = OPENERS[kind](address)
    try:
        with storage.transaction() as tx:
            codes = dict((name, code) for code, name in tx.task_types.register(["sendEmail", "resizeImage"]))
            assert codes["sendEmail"] != codes["resizeImage"] and all(c > 11 for c in codes.values())
            assert tx.task_types.register(["resizeImage"]) == tx.task_types.all()
            send = CustomType(codes["sendEmail"], "sendEmail")
            [task] = tx.tasks.insert([(None, send, {"to": "a@b", "n": 2**70}, None)], 1)
    finally:
        storage.close()
    # Two processes register overlapping names at once: each name gets one code, the old ones keep theirs.
    go, results = SPAWN.Barrier(2), SPAWN.Queue()
    workers = [
        SPAWN.Process(target=_register, args=(kind, address, names, go, results))
        for names in (["a1", "b2", "sendEmail"], ["b2", "c3"])
    ]
    run_together(*workers)
    seen = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    storage = OPENERS[kind](address)
    try:
        with storage.transaction() as tx:
            final = tx.task_types.all()
        names = [name for _, name in final]
        assert sorted(names) == ["a1", "b2", "c3", "resizeImage", "sendEmail"]
        assert len({code for code, _ in final}) == len(final)
        assert dict((n, c) for c, n in final)["sendEmail"] == codes["sendEmail"]
        assert all(set(answer) <= set(final) for answer in seen)
        reader = storage.reader()
        try:
            read = reader.tasks.get(task.uid)
            assert (read.type, read.type.label, read.details) == (send, "sendEmail", {"to": "a@b", "n": 2**70})
            assert [t.type.label for t in reader.log.changes_after(0, 10).tasks] == ["sendEmail"]
        finally:
            reader.close()
    finally:
        storage.close()


def test_a_full_database_refuses_the_unit_whole(database):
    kind, address = database
    OPENERS[kind](address).close()
    storage = OPENERS[kind](address, max_bytes=256 * 1024)
    stored = 0
    with pytest.raises(StorageFull):
        for _ in range(1_000):
            with storage.transaction() as tx:
                tx.tasks.insert([("movies", UPDATE, {"pad": "x" * 2_000}, None)] * 10, 1)
            stored += 10
    with storage.transaction() as tx:
        assert tx.tasks.count() == tx.tasks.next_uid() == stored == tx.log.last_seq()
    storage.close()


# -- TaskTable ----------------------------------------------------------------


def test_tasks_read_back_whole_by_uid_and_by_status(storage):
    insert(storage, 40)
    with storage.transaction() as tx:
        tasks = tx.tasks.get_many([3, 1, 2])
        for task in tasks[:2]:
            task.status, task.finished_at = TaskStatus.SUCCEEDED, 9
        tx.tasks.save(tasks[:2])
        assert [t.uid for t in tx.tasks.get_many(range(45), frozenset({TaskStatus.SUCCEEDED}))] == [1, 2]
        assert [t.uid for t in tx.tasks.get_many([39, 0, 99])] == [0, 39]
        assert tx.tasks.get(99) is None


def test_a_page_stops_at_its_byte_budget_but_always_holds_one_task(storage):
    insert(storage, 5)
    with storage.transaction() as tx:
        tasks, cut = tx.tasks.get_page([4, 3, 2, 1, 0], budget=1)
        assert ([t.uid for t in tasks], cut) == ([4], 3)
        tasks, cut = tx.tasks.get_page([0, 1, 2], budget=10**9)
        assert ([t.uid for t in tasks], cut) == ([0, 1, 2], None)


def test_delete_takes_only_the_given_statuses_and_logs_last_states_without_details(storage):
    insert(storage, 3)
    with storage.transaction() as tx:
        [done] = tx.tasks.get_many([1])
        done.status, done.finished_at, done.error = TaskStatus.FAILED, 5, {"code": "x"}
        tx.tasks.save([done])
    with storage.transaction() as tx:
        deleted = tx.tasks.delete([0, 1, 2], frozenset({TaskStatus.FAILED}))
        assert [(t.uid, t.details, t.error) for t in deleted] == [(1, None, None)]
        assert tx.changes.deleted == frozenset({1})
        assert tx.tasks.count() == 2 and tx.tasks.get(1) is None
    last = all_changes(storage).tasks[-1]
    assert (last.uid, last.status, last.details, last.error) == (1, TaskStatus.FAILED, None, None)


def test_matches(storage):
    insert(storage, 3)
    with storage.transaction() as tx:
        tx.tasks.save_matches(7, [2, 0])
        assert tx.tasks.matched_uids(7) == [2, 0]
        assert tx.changes == Changes()  # matches are not changes
        tx.tasks.forget_matches([7])
        assert tx.tasks.matched_uids(7) == []


def test_waiting_finds_the_enqueued_tasks_with_a_run_at_in_every_process(database):
    kind, address = database
    storage, other = OPENERS[kind](address), OPENERS[kind](address)
    try:
        with storage.transaction() as tx:
            tx.tasks.insert(
                [
                    ("movies", UPDATE, None, {"runAt": 50}),
                    ("movies", UPDATE, None, None),
                    ("movies", UPDATE, None, {"customMetadata": "m"}),
                    ("movies", UPDATE, None, {"runAt": 20, "attempts": 1}),
                ],
                1,
            )
            assert tx.tasks.waiting() == [(0, 50), (3, 20)]
        with other.transaction() as tx:
            assert tx.tasks.waiting() == [(0, 50), (3, 20)]
            leased, later = tx.tasks.get_many([0, 2])
            leased.status = TaskStatus.PROCESSING  # no longer waits, whatever its runAt
            later.extra = {**later.extra, "runAt": 70}
            tx.tasks.save([leased, later])
        reader = storage.reader()
        assert reader.tasks.waiting() == [(2, 70), (3, 20)]
        reader.close()
        with storage.transaction() as tx:
            tx.tasks.delete([3], frozenset({TaskStatus.ENQUEUED}))
            assert tx.tasks.waiting() == [(2, 70)]
    finally:
        storage.close()
        other.close()


def test_a_dump_loads_into_an_empty_database_only_and_starts_a_new_history(storage):
    before = storage.log.epoch()
    with storage.transaction() as tx:
        loaded = tx.tasks.load([(Task(5, "movies", TaskStatus.SUCCEEDED, UPDATE, 1, finished_at=2), None)], 0)
    assert loaded == 1 and storage.log.epoch() != before
    with storage.transaction() as tx:
        assert tx.tasks.next_uid() == 6 and tx.tasks.count() == 1
        assert [row[0] for row in tx.tasks.index_rows(-1, 10)] == [5]
        assert tx.log.last_seq() == 0  # a load logs nothing
    with pytest.raises(ValueError), storage.transaction() as tx:
        tx.tasks.load([], 0)


# -- ChangeLog ----------------------------------------------------------------


def test_pruning_keeps_a_gapless_tail_within_count_and_bytes(storage):
    insert(storage, 10)
    assert storage.log.prune_changes(4) == 6
    reader = storage.reader()
    assert (reader.log.oldest_change(), reader.log.last_seq()) == (7, 10)
    assert [t.seq for t in reader.log.changes_after(0, 100).tasks] == [7, 8, 9, 10]
    # A byte over the budget: the oldest change goes, and only it.
    assert storage.log.prune_changes(100, reader.log.change_bytes() - 1) == 1
    assert reader.log.oldest_change() == 8
    assert storage.log.prune_changes(100, 0) == 3
    assert (reader.log.oldest_change(), reader.log.change_bytes(), reader.log.last_seq()) == (None, 0, 10)
    reader.close()


def test_a_snapshot_reads_one_state_while_another_unit_commits(storage):
    insert(storage, 1)
    reader = storage.reader()
    with reader.snapshot():
        assert reader.log.last_seq() == 1
        insert(storage, 1)
        assert reader.log.last_seq() == 1 and reader.tasks.get(1) is None
    assert reader.log.last_seq() == 2
    reader.close()


# -- LeaseTable and KeyTable --------------------------------------------------


def test_leases_hold_tasks_until_they_end(storage):
    insert(storage, 3)
    with storage.transaction() as tx:
        tasks = tx.tasks.get_many([0, 1])
        for task in tasks:
            task.status = TaskStatus.PROCESSING
        tx.leases.insert(LeaseRecord("t", "w", 100, 30, "active"))
        tx.tasks.save(tasks, lease="t")
        assert [t.uid for t in tx.leases.tasks_of("t")] == [0, 1]
        assert tx.leases.holding([1, 2]) == {"t"}
        assert tx.leases.expired(100) == [] and tx.leases.expired(101) == ["t"]
        tx.leases.update("t", deadline=200)
        assert tx.leases.get("t") == LeaseRecord("t", "w", 200, 30, "active")
        tx.leases.release_tasks([1])
        assert tx.leases.holding([1]) == set()
        tx.leases.end_all("lost")
        assert tx.leases.get("t").state == "lost" and tx.leases.tasks_of("t") == []


def test_active_leases_are_counted_by_every_reader(storage):
    reader = storage.reader()
    try:
        assert reader.leases.count_active() == 0
        with storage.transaction() as tx:
            for token in ("a", "b", "c"):
                tx.leases.insert(LeaseRecord(token, "w", 100, 30, "active"))
            tx.leases.update("b", state="completed")
            assert tx.leases.count_active() == 2
        assert reader.leases.count_active() == 2
        with storage.transaction() as tx:
            tx.leases.end_all("lost")
        assert reader.leases.count_active() == 0
    finally:
        reader.close()


def test_held_leases_are_the_active_ones_with_their_processing_tasks_seen_by_readers(storage):
    insert(storage, 5)
    with storage.transaction() as tx:
        assert tx.leases.held() == []
        tasks = tx.tasks.get_many([0, 1, 2, 3])
        for task in tasks:
            task.status = TaskStatus.PROCESSING
        tx.leases.insert(LeaseRecord("b", "w2", 300, 30, "active", batch_uid=7))
        tx.leases.insert(LeaseRecord("a", "w1", 100, 30, "active", batch_uid=6))
        tx.leases.insert(LeaseRecord("c", "w3", 100, 30, "active"))  # its one task canceled below
        tx.leases.insert(LeaseRecord("d", "w4", 100, 30, "completed"))
        tx.tasks.save(tasks[:2], lease="b")
        tx.tasks.save(tasks[2:3], lease="a")
        tx.tasks.save(tasks[3:], lease="c")
        tasks[3].status = TaskStatus.CANCELED
        tx.tasks.save(tasks[3:])  # still marked as held by `c`, but no longer processing
        expected = [
            (LeaseRecord("a", "w1", 100, 30, "active", 6), [2]),
            (LeaseRecord("b", "w2", 300, 30, "active", 7), [0, 1]),
            (LeaseRecord("c", "w3", 100, 30, "active", None), []),
        ]
        assert tx.leases.held() == expected
    reader = storage.reader()
    try:
        assert reader.leases.held() == expected
        with storage.transaction() as tx:
            tx.leases.update("b", state="completed")
            tx.tasks.save(tx.tasks.get_many([0, 1]), lease=None)
        assert reader.leases.held() == [expected[0], expected[2]]
    finally:
        reader.close()


def test_keys(storage):
    key = KeyRecord("0d3b5c7e-0000-4000-8000-000000000001", "k", None, ["*"], ["movies"], None, 1, 1)
    with storage.transaction() as tx:
        assert tx.keys.insert_key(key) and not tx.keys.insert_key(key)
        assert tx.keys.update_key(key.uid, {"name": "n"}, 5).name == "n"
        assert tx.keys.update_key("missing", {"name": "n"}, 5) is None
        assert [k.uid for k in tx.keys.all_keys()] == [key.uid]
        assert tx.keys.delete_key(key.uid) and not tx.keys.delete_key(key.uid)


def test_save_keeps_a_lease_unless_told_and_a_lease_holds_processing_tasks_only(storage):
    insert(storage, 3)
    with storage.transaction() as tx:
        tasks = tx.tasks.get_many([0, 1, 2])
        for task in tasks:
            task.status = TaskStatus.PROCESSING
        tx.leases.insert(LeaseRecord("t", "w", 100, 30, "active"))
        tx.tasks.save(tasks, lease="t")
        tasks[0].status, tasks[0].canceled_by = TaskStatus.CANCELED, 9
        tx.tasks.save([tasks[0]])  # KEEP: still held by `t`, but no longer processing
        assert tx.leases.holding([0]) == {"t"}
        assert [t.uid for t in tx.leases.tasks_of("t")] == [1, 2]
        tx.tasks.save([tasks[1]], lease=None)
        assert tx.leases.holding([1]) == set()


def test_used_bytes_grow_with_what_is_stored(storage):
    with storage.transaction() as tx:
        before = tx.used_bytes()
    with storage.transaction() as tx:
        # Random text: a database may compress what it stores (PostgreSQL does), and this does not compress.
        tx.tasks.insert([("movies", UPDATE, {"pad": secrets.token_urlsafe(7_500)}, None) for _ in range(20)], 1)
    with storage.transaction() as tx:
        assert tx.used_bytes() >= before + 20 * 10_000
        used = tx.used_bytes()
    # A reader tells the same, outside any unit of work.
    reader = storage.reader()
    try:
        assert reader.used_bytes() == used
    finally:
        reader.close()


def test_iter_tasks_and_index_rows_read_every_task_with_its_matches(storage):
    insert(storage, 3)
    with storage.transaction() as tx:
        [deletion] = tx.tasks.insert([(None, TaskType.TASK_DELETION, {"matchedTasks": 2}, None)], 2)
        tx.tasks.save_matches(deletion.uid, [0, 2])
        [task] = tx.tasks.get_many([1])
        task.status, task.started_at, task.canceled_by = TaskStatus.PROCESSING, 7, None
        tx.tasks.save([task])
        walked = [(t.uid, matched) for t, matched in tx.tasks.iter_tasks(batch=2)]
        assert walked == [(0, None), (1, None), (2, None), (3, [0, 2])]
        rows = tx.tasks.index_rows(0, 2)
    assert rows == [
        (1, int(TaskStatus.PROCESSING), int(UPDATE), -1, 1, 7, -1, "movies"),
        (2, int(TaskStatus.ENQUEUED), int(UPDATE), -1, 1, -1, -1, "movies"),
    ]


def test_the_epoch_holds_across_opens_and_changes_when_renewed(database, tmp_path):
    kind, address = database
    storage = OPENERS[kind](address)
    first = storage.log.epoch()
    storage.close()
    storage = OPENERS[kind](address)
    assert storage.log.epoch() == first
    storage.renew_epoch()
    assert storage.log.epoch() != first
    storage.close()


def restore(kind: str, backup: str, address: str) -> None:
    """Puts a backup in place as the database at `address`, as an operator would."""
    if kind == "postgres":
        subprocess.run([shutil.which("pg_restore"), "--no-owner", "--dbname", address, backup], check=True)
    else:
        shutil.copyfile(backup, address)


def test_a_backup_is_a_whole_database_of_its_own(new_database, tmp_path):
    kind, make = new_database
    storage = OPENERS[kind](make())
    insert(storage, 4)
    storage.backup(str(tmp_path / "copy"))
    insert(storage, 1)
    epoch = storage.log.epoch()
    storage.close()
    restored = make()
    restore(kind, str(tmp_path / "copy"), restored)
    copy = OPENERS[kind](restored)  # a backup restores as a database of the same kind
    with copy.transaction() as tx:
        assert (tx.tasks.count(), tx.log.last_seq(), tx.log.epoch()) == (4, 4, epoch)
    copy.close()


def test_idempotency_keys_are_kept_replaced_and_pruned_oldest_first(database):
    from taskhub.server.storage.contract import IdempotencyRecord

    kind, address = database
    storage = OPENERS[kind](address)
    keys = [b"a", b"b", b"c", b"d"]
    records = [IdempotencyRecord(key, b"request-" + key, n * 10, n + 1, 100 + n) for n, key in enumerate(keys)]
    with storage.transaction() as tx:
        assert tx.idempotency.get_keys([b"a"]) == {}
        tx.idempotency.put_keys(records)
        # A unit of work sees its own records; storing one of the same key replaces it.
        tx.idempotency.put_keys([IdempotencyRecord(b"a", b"other", 7, 2, 104)])
        assert tx.idempotency.get_keys([b"a", b"z"]) == {b"a": IdempotencyRecord(b"a", b"other", 7, 2, 104)}
    storage.close()
    storage = OPENERS[kind](address)  # kept across opens
    with storage.transaction() as tx:
        assert tx.idempotency.get_keys([b"c"]) == {b"c": records[2]}
        # Many at once, past any cap on one statement's parameters.
        many = [IdempotencyRecord(n.to_bytes(4, "big"), b"r", n, 1, 50) for n in range(2_000)]
        tx.idempotency.put_keys(many)
        assert len(tx.idempotency.get_keys([r.key for r in many])) == 2_000
        # Created before 102 (b and the 2,000) go, then the oldest past the two newest (c): d and a stay.
        assert tx.idempotency.prune_keys(102, 2) == 2_002
        assert sorted(tx.idempotency.get_keys([b"a", b"b", b"c", b"d"])) == [b"a", b"d"]
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        tx.idempotency.put_keys([IdempotencyRecord(b"e", b"r", 0, 1, 200)])
        raise RuntimeError("rolled back")
    with storage.transaction() as tx:
        assert tx.idempotency.get_keys([b"e"]) == {}
    storage.close()


# -- ReplicaTable, KeyTable.version, follow_commits: several servers on one database ------------------


def test_the_leader_row_and_the_replicas_positions_are_kept_in_units_of_work(storage):
    with storage.transaction() as tx:
        assert tx.replicas.leader() == NO_LEADER
        assert tx.replicas.slowest(0) is None
        tx.replicas.set_leader(Leader("a", 1, 500))
        tx.replicas.report("a", 7, 100)
        tx.replicas.report("b", 3, 50)
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        tx.replicas.set_leader(Leader("b", 2, 900))
        tx.replicas.leave("a")
        raise RuntimeError("rolled back: neither write holds")
    with storage.transaction() as tx:
        assert tx.replicas.leader() == Leader("a", 1, 500)
        # The lowest position among those reported at or after `since`: b's is older than 60.
        assert (tx.replicas.slowest(0), tx.replicas.slowest(60)) == (3, 7)
        tx.replicas.report("b", 9, 120)  # reported again: its new position replaces the old
        assert tx.replicas.slowest(0) == 7
        tx.replicas.leave("a")
        assert tx.replicas.slowest(0) == 9
        tx.replicas.set_leader(Leader("b", 2, 900))
        assert tx.replicas.leader() == Leader("b", 2, 900)


def _take_the_lead(kind: str, address: str, name: str, rounds: int, go, results) -> None:
    """Takes the lead whenever it lapsed (a deadline of 0: at once), `rounds` times: read, decide, write."""
    storage = OPENERS[kind](address)
    go.wait()
    terms = []
    while len(terms) < rounds:
        with storage.transaction() as tx:
            leader = tx.replicas.leader()
            if leader.name != name:
                time.sleep(0.001)  # widen the window between the read and the write
                tx.replicas.set_leader(Leader(name, leader.term + 1, 0))
                terms.append(leader.term + 1)
        time.sleep(0.002)
    storage.close()
    results.put((name, terms))


def test_two_processes_taking_the_lead_never_get_one_term_twice(database):
    """ReplicaTable: servers claiming the lead at once serialize, so a term is given once. A database one
    server alone may serve (SQLite) keeps the row for its own process: there is nothing to share."""
    kind, address = database
    if kind == "sqlite":
        pytest.skip("one server per SQLite file: its leader row is its own")
    OPENERS[kind](address).close()
    go, results = SPAWN.Barrier(2), SPAWN.Queue()
    workers = [SPAWN.Process(target=_take_the_lead, args=(kind, address, n, 20, go, results)) for n in "ab"]
    run_together(*workers)
    terms = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(30)
    # Each took it 20 times, alternating: every term from 1 to 40 given once, to one of them.
    assert sorted(terms["a"] + terms["b"]) == list(range(1, 41))


def test_every_key_write_moves_the_keys_version_seen_by_every_storage_on_the_database(database):
    kind, address = database
    storage, other = OPENERS[kind](address), OPENERS[kind](address)
    reader = other.reader()
    key = KeyRecord("0d3b5c7e-0000-4000-8000-000000000002", "k", None, ["*"], ["movies"], None, 1, 1)
    try:
        seen = [reader.keys.version()]
        for write in (
            lambda tx: tx.keys.insert_key(key),
            lambda tx: tx.keys.update_key(key.uid, {"name": "n"}, 5),
            lambda tx: tx.keys.delete_key(key.uid),
        ):
            with storage.transaction() as tx:
                assert write(tx)
            seen.append(reader.keys.version())
        assert len(set(seen)) == 4  # each write moved it
        with storage.transaction() as tx:  # writes that wrote nothing
            assert not tx.keys.delete_key(key.uid) and tx.keys.update_key(key.uid, {"name": "m"}, 6) is None
        assert reader.keys.version() == seen[-1]
    finally:
        reader.close()
        other.close()
        storage.close()


def test_pruning_keeps_what_a_replica_has_not_followed_and_runs_only_past_its_check(storage):
    insert(storage, 10)
    reader = storage.reader()

    def refuse(tx) -> None:
        assert tx.replicas.leader() == NO_LEADER  # it runs in the unit of work: it can read it
        raise LookupError("not ours to prune")

    with pytest.raises(LookupError):
        storage.log.prune_changes(0, check=refuse)
    assert reader.log.oldest_change() == 1
    # `keep` alone would leave 2; a replica stands at 6: changes 7 to 10 stay.
    assert storage.log.prune_changes(2, keep_after=6) == 6
    assert reader.log.oldest_change() == 7
    # The byte budget outranks it: the oldest go until the rest fit (a byte over: the oldest alone).
    assert storage.log.prune_changes(2, reader.log.change_bytes() - 1, keep_after=3) == 1
    assert reader.log.oldest_change() == 8
    reader.close()


def test_another_storages_commit_wakes_a_follower_of_commits(database):
    """Storage.follow_commits on a database several servers share: a unit of work that logged changes
    wakes every follower; one that logged none need not. SQLite promises no wake (one server per file)."""
    kind, address = database
    if kind == "sqlite":
        pytest.skip("one server per SQLite file: its follower polls for tools' commits")
    import threading

    storage, other = OPENERS[kind](address), OPENERS[kind](address)
    woken, told = threading.Event(), []
    stop = storage.follow_commits(lambda seq: (told.append(seq), woken.set()))
    try:
        time.sleep(0.5)  # listening, and past the wake a new connection may give
        woken.clear()
        [task] = insert(other, 1)
        assert woken.wait(10)
        assert told[-1] == task.seq  # the newest sequence number it logged
    finally:
        stop()
        other.close()
        storage.close()


def test_a_follower_of_commits_whose_connection_was_ended_listens_again(database):
    """A lost listening connection is opened again: commits made after it still wake the follower."""
    kind, address = database
    if kind == "sqlite":
        pytest.skip("one server per SQLite file: its follower polls for tools' commits")
    import threading

    import psycopg

    storage, other = OPENERS[kind](address), OPENERS[kind](address)
    woken = threading.Event()
    stop = storage.follow_commits(lambda seq: woken.set())
    try:
        listening = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
        with psycopg.connect(address, autocommit=True) as admin:
            for _ in range(100):
                pids = [pid for (pid,) in admin.execute(listening)]
                if pids:
                    break
                time.sleep(0.05)
            assert pids, "no connection listens"
            for pid in pids:  # what a database restart or an operator does to it
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            for _ in range(200):  # a new connection listens
                again = [pid for (pid,) in admin.execute(listening)]
                if again and not set(again) & set(pids):
                    break
                time.sleep(0.05)
            assert again and not set(again) & set(pids), "no new connection listens"
        woken.clear()
        insert(other, 1)
        assert woken.wait(10)
    finally:
        stop()
        other.close()
        storage.close()


def test_webhooks_are_stored_rewritten_and_deleted_with_their_progress(database):
    from taskhub.server.storage.contract import WebhookRecord

    kind, address = database
    storage = OPENERS[kind](address)
    with storage.transaction() as tx:
        assert not tx.webhooks.has_webhooks() and tx.webhooks.all_webhooks() == []
        tx.webhooks.put_webhook(WebhookRecord("b", "http://b/", {"X-A": "1"}, "s", 20))
        tx.webhooks.put_webhook(WebhookRecord("a", "http://a/", {}, None, 10))
        assert tx.webhooks.has_webhooks()
    storage.close()
    storage = OPENERS[kind](address)  # kept across opens
    reader = storage.reader()
    try:
        assert [w.uuid for w in reader.webhooks.all_webhooks()] == ["a", "b"]  # by creation time
        assert reader.webhooks.get_webhook("b") == WebhookRecord("b", "http://b/", {"X-A": "1"}, "s", 20, 0, 0)
        assert reader.webhooks.get_webhook("c") is None
    finally:
        reader.close()
    with storage.transaction() as tx:
        tx.webhooks.add_outbox([7, 8], bound=100)
        tx.webhooks.mark_delivered("b", 1)
        # A rewrite keeps the progress; a cursor never goes back.
        tx.webhooks.put_webhook(WebhookRecord("b", "http://b2/", {}, None, 99))
        tx.webhooks.mark_delivered("b", 0)
        assert tx.webhooks.get_webhook("b") == WebhookRecord("b", "http://b2/", {}, None, 20, 1, 0)
        assert tx.webhooks.delete_webhook("a") and not tx.webhooks.delete_webhook("a")
        # With `a` gone, the entry `b` took is nobody's any more.
        assert tx.webhooks.outbox_after(0, 10) == [(2, 8)]
    storage.close()


def test_the_outbox_numbers_entries_keeps_what_is_owed_and_drops_past_its_bound(database):
    from taskhub.server.storage.contract import WebhookRecord

    kind, address = database
    storage = OPENERS[kind](address)
    with storage.transaction() as tx:
        tx.webhooks.put_webhook(WebhookRecord("early", "http://e/", {}, None, 1))
        assert tx.webhooks.add_outbox([10, 11, 12], bound=5) == 0
        # A new webhook is owed only what comes after it.
        tx.webhooks.put_webhook(WebhookRecord("late", "http://l/", {}, None, 2))
        assert tx.webhooks.add_outbox([13], bound=5) == 0
        assert tx.webhooks.outbox_after(0, 10) == [(1, 10), (2, 11), (3, 12), (4, 13)]
        assert tx.webhooks.outbox_after(2, 1) == [(3, 12)]
        assert tx.webhooks.get_webhook("late").delivered == 3
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        tx.webhooks.add_outbox([99], bound=5)
        raise RuntimeError("rolled back")
    with storage.transaction() as tx:
        # Entries every webhook took are deleted; numbering goes on without a gap after a rollback.
        tx.webhooks.mark_delivered("early", 2)
        assert tx.webhooks.outbox_size() == 2
        tx.webhooks.mark_delivered("late", 4)
        assert tx.webhooks.outbox_size() == 2  # `early` is still owed 3 and 4
        # Past the bound of 3: entries 5..9 arrive, the oldest go down to 6, and who had not taken them is told.
        dropped = tx.webhooks.add_outbox([14, 15, 16, 17, 18], bound=3)
        assert tx.webhooks.outbox_after(0, 10) == [(7, 16), (8, 17), (9, 18)]
        early, late = tx.webhooks.get_webhook("early"), tx.webhooks.get_webhook("late")
        assert (early.delivered, early.dropped) == (6, 4)  # 3, 4, 5, 6
        assert (late.delivered, late.dropped) == (6, 2)  # 5, 6
        assert dropped == 6
        assert tx.webhooks.outbox_size() == 3
    storage.close()


def test_outbox_entries_are_numbered_across_storages_on_one_database(database):
    from taskhub.server.storage.contract import WebhookRecord

    kind, address = database
    first, second = OPENERS[kind](address), OPENERS[kind](address)
    with first.transaction() as tx:
        tx.webhooks.put_webhook(WebhookRecord("w", "http://w/", {}, None, 1))
    for n, storage in enumerate([first, second, first, second]):
        with storage.transaction() as tx:
            tx.webhooks.add_outbox([100 + n], bound=10)
    # Each sees the other's webhook and entries, numbered in commit order without a gap.
    reader = second.reader()
    try:
        assert reader.webhooks.outbox_after(0, 10) == [(1, 100), (2, 101), (3, 102), (4, 103)]
    finally:
        reader.close()
    first.close()
    second.close()
