"""The in-memory task index answers exactly what SQL over the task rows answers, built either way."""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from taskhub.server.index.dates import HOUR, DateBuckets
from taskhub.server.index.memory import MemoryFinder
from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import Scope, Task, TaskQuery, TaskStatus, TaskType
from taskhub.server.storage.rows import COLUMNS, row_to_task
from taskhub.server.storage.sqlite.database import SqliteStorage as Store
from taskhub.server.storage.sqlite.finder import SqlFinder, where

T0 = 1_700_000_000_000_000
times = st.one_of(st.none(), st.integers(T0, T0 + 5 * HOUR))
tasks = st.lists(
    st.tuples(
        st.sampled_from(list(TaskStatus)),
        st.sampled_from(list(TaskType)),
        st.sampled_from([None, "a", "b", "movies"]),
        st.sampled_from([None, 1, 2]),
        st.integers(T0, T0 + 5 * HOUR),
        times,
        times,
    ),
    max_size=60,
)


def sets(values):
    return st.one_of(st.none(), st.frozensets(st.sampled_from(values), max_size=3))


queries = st.builds(
    TaskQuery,
    uids=sets(list(range(70))),
    index_uids=sets(["a", "b", "movies", "zzz"]),
    statuses=sets(list(TaskStatus)),
    types=sets(list(TaskType)),
    canceled_by=sets([1, 2, 3]),
    before_enqueued_at=times,
    after_enqueued_at=times,
    before_started_at=times,
    after_started_at=times,
    before_finished_at=times,
    after_finished_at=times,
    below_uid=st.one_of(st.none(), st.integers(0, 70)),
    not_index_uids=sets(["a", "b", "movies", "zzz"]),
    scope=st.one_of(
        st.none(),
        st.builds(
            Scope, names=st.frozensets(st.sampled_from(["a", "b"])), prefixes=st.sampled_from([(), ("mov",), ("x",)])
        ),
    ),
)


def sql_uids(store: Store, query: TaskQuery) -> list[int]:
    sql, params = where(query)
    return [r[0] for r in store.conn.execute(f"SELECT uid FROM tasks WHERE {sql} ORDER BY uid", params)]


def sql_page(store: Store, query: TaskQuery, *, limit: int, from_uid: int | None, reverse: bool) -> list[int]:
    sql, params = where(query)
    if from_uid is not None:
        sql += " AND uid >= ?" if reverse else " AND uid <= ?"
        params.append(from_uid)
    rows = store.conn.execute(
        f"SELECT {COLUMNS} FROM tasks WHERE {sql} ORDER BY uid {'ASC' if reverse else 'DESC'} LIMIT ?", (*params, limit)
    )
    return [row_to_task(r).uid for r in rows]


def stored(tmp_path, rows) -> tuple[Store, list[Task], MemoryFinder]:
    """Rows of any state, written straight to storage (no rule would make most of them), and a
    finder that followed every commit (links and unlinks), as a server's does."""
    store = Store(tmp_path / "index.db")
    followed = MemoryFinder()
    made = []
    for status, type_, index_uid, canceled_by, enqueued, started, finished in rows:
        with store.transaction() as tx:
            [task] = tx.tasks.insert([(index_uid, type_, None, None)], enqueued)
        followed.apply(tx.changes)
        task = dataclasses.replace(
            task, status=status, canceled_by=canceled_by, started_at=started, finished_at=finished
        )
        with store.transaction() as tx:
            tx.tasks.save([task])
        followed.apply(tx.changes)
        made.append(task)
    return store, made, followed


def selects_match_sql(
    store: Store, made: list[Task], followed: MemoryFinder, query: TaskQuery
) -> tuple[MemoryFinder, list[int]]:
    """An index loaded from the rows, one fed the tasks, and one that followed every commit all
    select what SQL does; answers the loaded one and that answer."""
    loaded, applied = MemoryFinder(), TaskIndex()
    loaded.reload(store)
    applied.apply(made)
    expected = sql_uids(store, query)
    assert loaded.uids(query, limit=1_000) == expected
    if query.not_index_uids is None:
        assert list(applied.select(query)) == expected
    assert followed.uids(query, limit=1_000) == expected
    assert followed.count(query) == len(expected)
    sql = SqlFinder(store.path)
    try:
        assert sql.uids(query, limit=1_000) == expected
        assert followed.index_uids(query) == sql.index_uids(query)
    finally:
        sql.close()
    return loaded, expected


@settings(max_examples=60, deadline=None)
@given(
    rows=tasks,
    query=queries,
    reverse=st.booleans(),
    limit=st.integers(0, 8),
    from_uid=st.one_of(st.none(), st.integers(0, 70)),
)
def test_the_index_matches_the_store(tmp_path_factory, rows, query, reverse, limit, from_uid):
    pages_match_sql(tmp_path_factory.mktemp("i"), rows, query, limit=limit, from_uid=from_uid, reverse=reverse)


def pages_match_sql(folder, rows, query: TaskQuery, *, limit: int, from_uid: int | None, reverse: bool) -> None:
    """The index's select, page and total for `query` against the store's SQL, over `rows`."""
    store, made, followed = stored(folder, rows)
    sql = SqlFinder(store.path)
    try:
        loaded, expected = selects_match_sql(store, made, followed, query)
        page, total = loaded.page(query, limit=limit, from_uid=from_uid, reverse=reverse)
        assert (page, total) == (
            sql_page(store, query, limit=limit + 1, from_uid=from_uid, reverse=reverse),
            len(expected),
        )
        # The two finders answer alike through the read-model interface, pages and total.
        assert sql.page(query, limit=limit, from_uid=from_uid, reverse=reverse) == (page, total)
        for newest in (False, True):
            assert followed.uids(query, limit=limit, after_uid=from_uid, newest=newest) == sql.uids(
                query, limit=limit, after_uid=from_uid, newest=newest
            )
    finally:
        sql.close()
        store.close()


# A date bound alone is paged from its disjoint hours, without their union: every column,
# either bound or both, from any uid, both orders.
lone_dates = st.sampled_from(["enqueued_at", "started_at", "finished_at"]).flatmap(
    lambda column: st.builds(
        lambda after, before: TaskQuery(**{f"after_{column}": after, f"before_{column}": before}), times, times
    )
)


@settings(max_examples=80, deadline=None)
@given(
    rows=tasks,
    query=lone_dates,
    reverse=st.booleans(),
    limit=st.integers(0, 8),
    from_uid=st.one_of(st.none(), st.integers(0, 70)),
)
def test_a_lone_date_bound_pages_as_the_store_does(tmp_path_factory, rows, query, reverse, limit, from_uid):
    pages_match_sql(tmp_path_factory.mktemp("d"), rows, query, limit=limit, from_uid=from_uid, reverse=reverse)


# Index and status together, and the two with a type, have bitmaps of their own: queries that lean on them.
pair_queries = st.builds(
    TaskQuery,
    index_uids=st.frozensets(st.sampled_from(["a", "b", "movies", "zzz"]), max_size=3),
    statuses=st.frozensets(st.sampled_from(list(TaskStatus)), max_size=3),
    types=st.one_of(st.none(), st.frozensets(st.sampled_from(list(TaskType)), min_size=1)),
)


@settings(max_examples=40, deadline=None)
@given(rows=tasks, query=pair_queries)
def test_index_and_status_together_match_the_store(tmp_path_factory, rows, query):
    store, made, followed = stored(tmp_path_factory.mktemp("p"), rows)
    try:
        selects_match_sql(store, made, followed, query)
    finally:
        store.close()


def test_changes_and_deletions_move_uids(tmp_path):
    store, made, _ = stored(tmp_path, [(TaskStatus.ENQUEUED, TaskType.INDEX_CREATION, "a", None, T0, None, None)] * 3)
    index = TaskIndex()
    index.apply(made)
    done = dataclasses.replace(made[1], status=TaskStatus.CANCELED, canceled_by=9, finished_at=T0 + HOUR)
    index.apply([done])
    assert list(index.select(TaskQuery(statuses=frozenset({TaskStatus.ENQUEUED})))) == [0, 2]
    assert list(index.select(TaskQuery(canceled_by=frozenset({9})))) == [1]
    assert list(index.select(TaskQuery(after_finished_at=T0))) == [1]
    index.apply([done], deleted=frozenset({1}))
    assert list(index.select(TaskQuery())) == [0, 2]
    assert list(index.select(TaskQuery(canceled_by=frozenset({9})))) == []
    store.close()


def contents(index: TaskIndex) -> dict:
    """Every non-empty bitmap of an index, by what it stands for, as sets."""
    maps = {
        **{(kind, key): bits for kind, table in index._sets.items() for key, bits in table.items()},
        **{(column, hour): bits for column, table in index.buckets.items() for hour, bits in table.items()},
    }
    return {key: set(bits) for key, bits in maps.items() if bits} | {"all": set(index.all)}


# A task's life as commits: each step is one commit of some tasks' new states, some of them deleted.
states = st.tuples(
    st.sampled_from(list(TaskStatus)), st.sampled_from([None, "a", "b"]), st.sampled_from([None, 1, 2]), times, times
)
lives = st.lists(
    st.lists(st.tuples(st.integers(0, 12), states, st.booleans()), min_size=1, max_size=6), min_size=1, max_size=12
)


def live(index: TaskIndex, last: dict[int, Task], commit) -> None:
    """Applies one commit of `lives` to `index`, and keeps `last` as each stored task's last state."""
    changed = [
        Task(
            uid=uid,
            index_uid=index_uid,
            status=status,
            type=TaskType(uid % 5 + 1),
            canceled_by=canceled_by,
            enqueued_at=T0 + uid * HOUR // 3,
            started_at=started,
            finished_at=finished,
            seq=0,
        )
        for uid, (status, index_uid, canceled_by, started, finished), _ in commit
    ]
    gone = frozenset(uid for uid, _, delete in commit if delete)
    index.apply(changed, gone)
    last.update((t.uid, t) for t in changed)
    for uid in gone:
        last.pop(uid, None)


@settings(max_examples=80, deadline=None)
@given(commits=lives)
def test_changes_applied_in_place_match_an_index_built_from_the_last_states(commits):
    # Held tasks move only the bitmaps of the fields that changed; that must end where a fresh build does.
    index, last = TaskIndex(), {}
    for commit in commits:
        live(index, last, commit)
    fresh = TaskIndex()
    fresh.load(
        [
            (
                t.uid,
                int(t.status),
                int(t.type),
                -1 if t.canceled_by is None else t.canceled_by,
                t.enqueued_at,
                -1 if t.started_at is None else t.started_at,
                -1 if t.finished_at is None else t.finished_at,
                t.index_uid,
            )
            for t in sorted(last.values(), key=lambda t: t.uid)
        ]
    )
    assert contents(index) == contents(fresh)


@settings(max_examples=80, deadline=None)
@given(
    commits=lives,
    asks=st.lists(
        st.tuples(st.sampled_from(["enqueued_at", "started_at", "finished_at"]), times, times).filter(
            lambda ask: ask[1:] != (None, None)
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_date_bounds_asked_between_commits_follow_every_change(commits, asks):
    # Each hour's stats and an edge hour's sorted times outlive a call: asked between commits,
    # twice (the second ask reads the sorted times), bounds answer what the last states do.
    index, last = TaskIndex(), {}
    for commit in commits:
        live(index, last, commit)
        for column, after, before in asks:
            query = TaskQuery(**{f"after_{column}": after, f"before_{column}": before})
            expected = sorted(
                uid
                for uid, t in last.items()
                if getattr(t, column) is not None
                and (after is None or getattr(t, column) > after)
                and (before is None or getattr(t, column) < before)
            )
            for _ in range(2):
                assert list(index.select(query)) == expected
                assert index.page(query, limit=2, from_uid=None, reverse=False) == (expected[::-1][:3], len(expected))
                assert index.page(query, limit=2, from_uid=None, reverse=True) == (expected[:3], len(expected))


def test_memory_follows_the_tasks_stored_not_the_uids_given():
    index = TaskIndex()
    window = 500
    for uid in range(20_000):
        status = TaskStatus.SUCCEEDED if uid % 3 else TaskStatus.FAILED
        index.apply(
            [
                Task(
                    uid=uid,
                    index_uid=f"i{uid % 7}",
                    status=status,
                    type=TaskType.INDEX_CREATION,
                    enqueued_at=T0 + uid,
                    started_at=T0 + uid,
                    finished_at=T0 + uid + 1,
                    seq=uid,
                )
            ]
        )
        if uid >= window:  # the oldest task goes, as the automatic cleanup would
            gone = uid - window
            index.apply(
                [
                    Task(
                        uid=gone,
                        index_uid=None,
                        status=TaskStatus.SUCCEEDED,
                        type=TaskType.INDEX_CREATION,
                        enqueued_at=T0,
                        seq=uid,
                    )
                ],
                deleted=frozenset({gone}),
            )
    assert len(index.columns.arrays["status"]) <= 4 * window
    live = range(20_000 - window, 20_000)
    assert list(index.select(TaskQuery())) == list(live)
    assert list(index.select(TaskQuery(statuses=frozenset({TaskStatus.FAILED})))) == [u for u in live if u % 3 == 0]
    assert list(index.select(TaskQuery(after_finished_at=T0 + 19_990))) == list(range(19_990, 20_000))
    assert list(index.select(TaskQuery(index_uids=frozenset({"i3"}), before_started_at=T0 + 19_600))) == [
        u for u in live if u % 7 == 3 and u < 19_600
    ]


def test_a_uid_older_than_the_columns_start_is_kept_in_its_own_place():
    # The columns start at the oldest uid stored; one older than that must move the start back,
    # not index the columns from their end.
    hour0 = T0 // HOUR * HOUR
    index = TaskIndex()
    for uid, at in ((100_001, hour0 + 2), (100_002, hour0), (5, hour0 + 1)):
        index.apply(
            [
                Task(
                    uid=uid,
                    index_uid="a",
                    status=TaskStatus.SUCCEEDED,
                    type=TaskType.INDEX_UPDATE,
                    enqueued_at=at,
                    seq=uid,
                )
            ]
        )
    assert list(index.select(TaskQuery(after_enqueued_at=hour0))) == [5, 100_001]
    assert list(index.select(TaskQuery(after_enqueued_at=hour0 + 1))) == [100_001]
    assert index.enqueued_at(100_002) == hour0


@pytest.mark.parametrize("sorted_edges", [0, DateBuckets.SORTED_EDGES])
def test_date_bounds_inside_busy_hours_match_the_times_exactly(sorted_edges):
    # Thousands of tasks an hour, as at 10M tasks: edge hours are cut by the exact times, along
    # every path (a run of uids, an array, most of the hour kept, or sparse uids; or, for an hour
    # asked again, its sorted times), deleted tasks left out.
    rng = random.Random(9)
    hour0 = T0 // HOUR * HOUR
    tasks = [
        Task(
            uid=uid,
            index_uid="a",
            status=TaskStatus.SUCCEEDED,
            type=TaskType.INDEX_UPDATE,
            enqueued_at=hour0 + uid * 1_000,  # rising: one hour, one run of uids
            started_at=hour0 + rng.randrange(12 * HOUR),  # sparse: each hour's uids far apart
            finished_at=hour0 + rng.randrange(3 * HOUR),  # dense but interleaved over three hours
            seq=uid + 1,
        )
        for uid in range(3000)
    ]
    index = TaskIndex()
    index.dates.SORTED_EDGES = sorted_edges
    index.apply(tasks)
    gone = frozenset(rng.sample(range(3000), 300))
    index.apply([t for t in tasks if t.uid in gone], gone)
    live = [t for t in tasks if t.uid not in gone]
    for column in ("enqueued_at", "started_at", "finished_at"):
        for attempt in range(90):
            low = hour0 + rng.randrange(12 * HOUR) if column == "started_at" else hour0 + rng.randrange(3 * HOUR)
            high = low + rng.randrange(1, 2 * HOUR)
            if attempt % 3:  # on a task's own time, or a microsecond away: bounds are exclusive
                low, high = sorted(getattr(t, column) for t in rng.sample(live, 2))
                low, high = (low - 1, high + 1) if attempt % 3 == 2 else (low, high)
            for after, before in ((low, None), (None, high), (low, high)):
                query = TaskQuery(**{f"after_{column}": after, f"before_{column}": before})
                expected = {
                    t.uid
                    for t in live
                    if (after is None or getattr(t, column) > after) and (before is None or getattr(t, column) < before)
                }
                assert set(index.select(query)) == expected, (column, after, before)
                # The same bound paged from its hours, from the newest and from a uid in the middle.
                newest = sorted(expected, reverse=True)
                assert index.page(query, limit=4, from_uid=None, reverse=False) == (newest[:5], len(expected))
                assert index.page(query, limit=4, from_uid=1500, reverse=True) == (
                    sorted(uid for uid in expected if uid >= 1500)[:5],
                    len(expected),
                )


def test_an_edge_hour_mostly_kept_drops_exactly_the_tasks_outside_the_bound():
    # An hour's uids in one dense stretch, their times shuffled, a few of the next hour's among
    # them: a bound near the hour's end keeps most of it, so the few left out are taken away,
    # the hour's first and last uids among them.
    hour0 = T0 // HOUR * HOUR
    order = random.Random(4).sample(range(1000), 1000)
    times = {uid: hour0 + 1_000 + order[uid] * 1_000 for uid in range(1000)}
    times[0], times[999] = hour0 + 999_999_000, hour0 + 999_998_000  # the newest two times
    times.update({uid: hour0 + HOUR + uid for uid in range(300, 1000, 97)})  # the next hour's
    tasks = [
        Task(
            uid=uid,
            index_uid="a",
            status=TaskStatus.SUCCEEDED,
            type=TaskType.INDEX_UPDATE,
            enqueued_at=T0,
            finished_at=at,
            seq=uid + 1,
        )
        for uid, at in times.items()
    ]
    index = TaskIndex()
    index.apply(tasks)
    for cut in (hour0 + 999_998_000, hour0 + 950_000_000, hour0 + 50_000_000, hour0 + 1_000):
        for after, before in ((None, cut), (cut, None)):
            expected = {
                uid for uid, at in times.items() if (after is None or at > after) and (before is None or at < before)
            }
            query = TaskQuery(after_finished_at=after, before_finished_at=before)
            assert set(index.select(query)) == expected, (after, before)


def test_a_time_moved_within_its_hour_crosses_a_bound_inside_that_hour():
    # A task leased again in the same hour keeps its bucket but not its time: an edge hour's
    # times, sorted when it was asked twice, must follow.
    hour0 = T0 // HOUR * HOUR
    tasks = [
        Task(
            uid=uid,
            index_uid="a",
            status=TaskStatus.PROCESSING,
            type=TaskType.INDEX_UPDATE,
            enqueued_at=hour0,
            started_at=hour0 + at,
            seq=uid + 1,
        )
        for uid, at in enumerate((10, 100))
    ]
    index = TaskIndex()
    index.apply(tasks)
    query = TaskQuery(after_started_at=hour0 + 50)
    for _ in range(2):
        assert list(index.select(query)) == [1]
    index.apply([dataclasses.replace(tasks[0], started_at=hour0 + 60)])
    assert list(index.select(query)) == [0, 1]
    assert index.page(query, limit=5, from_uid=None, reverse=False) == ([1, 0], 2)


class Yielding(dict):
    """A dict that lets another thread run inside each lookup and change, where a race would strike."""

    def __contains__(self, key):
        time.sleep(0)
        return super().__contains__(key)

    def __getitem__(self, key):
        time.sleep(0)
        return super().__getitem__(key)

    def __delitem__(self, key):
        time.sleep(0)
        super().__delitem__(key)


def test_two_threads_refining_edge_hours_at_once_both_get_exact_answers():
    # Lists refine on the loop and matching on the store thread, so the sorted-edge cache is
    # read and changed from two threads. Two hours kept at most make every ask evict one.
    hour0, step = T0 // HOUR * HOUR, HOUR // 50
    index = TaskIndex()
    index.dates.SORTED_EDGES = 2
    index.dates._sorted_edges = Yielding()
    index.apply(
        [
            Task(
                uid=uid,
                index_uid="a",
                status=TaskStatus.SUCCEEDED,
                type=TaskType.INDEX_UPDATE,
                enqueued_at=hour0 + uid * step,
                seq=uid + 1,
            )
            for uid in range(500)
        ]
    )
    failures = []

    def ask(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(2_000):
                bound = hour0 + rng.randrange(499 * step)  # before the last task's time
                got = index.select(TaskQuery(after_enqueued_at=bound))
                first = (bound - hour0) // step + 1  # the first uid whose time is past the bound
                assert (len(got), got.min()) == (500 - first, first)
        except Exception as error:  # reported below, from the test's own thread
            failures.append(error)

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


def test_a_bound_inside_an_hour_whose_tasks_were_all_deleted_matches_nothing_there():
    hour0 = T0 // HOUR * HOUR
    tasks = [
        Task(
            uid=uid,
            index_uid="a",
            status=TaskStatus.SUCCEEDED,
            type=TaskType.INDEX_UPDATE,
            enqueued_at=hour0 + uid,
            seq=uid + 1,
        )
        for uid in range(5)
    ]
    index = TaskIndex()
    index.apply(tasks)
    index.apply(tasks, frozenset(range(5)))
    assert list(index.select(TaskQuery(after_enqueued_at=hour0 + 2))) == []
    assert list(index.select(TaskQuery(before_enqueued_at=hour0 + 2))) == []


@settings(max_examples=40, deadline=None)
@given(
    waits=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 9)), st.sampled_from([TaskStatus.ENQUEUED, TaskStatus.PROCESSING])
        ),
        min_size=1,
        max_size=12,
    ),
    later=st.lists(st.tuples(st.integers(0, 11), st.one_of(st.none(), st.integers(0, 9))), max_size=4),
    asks=st.lists(st.integers(-1, 10), min_size=1, max_size=4),
)
def test_due_at_matches_the_store_as_runs_are_moved_and_come_due(tmp_path_factory, waits, later, asks):
    """Tasks with and without a runAt, some moved to another time or out of the queue: the memory finder
    (followed, and reloaded from the partial index) and SQL agree on which are due, at times asked in order."""
    store = Store(tmp_path_factory.mktemp("due") / "due.db")
    followed = MemoryFinder()
    with store.transaction() as tx:
        made = tx.tasks.insert(
            [
                ("a", TaskType.INDEX_CREATION, None, None if run_at is None else {"runAt": run_at})
                for run_at, _ in waits
            ],
            1,
        )
        for task, (_, status) in zip(made, waits):
            task.status = status
        tx.tasks.save(made)
    followed.apply(tx.changes)
    for position, run_at in later:  # a retry's new runAt, or a run taken away
        if position < len(made):
            task = made[position]
            task.status, task.extra = TaskStatus.ENQUEUED, None if run_at is None else {"runAt": run_at}
            with store.transaction() as tx:
                tx.tasks.save([task])
            followed.apply(tx.changes)
    loaded = MemoryFinder()
    loaded.reload(store)
    sql = SqlFinder(store.path)
    try:
        for now in sorted(asks):
            query = TaskQuery(statuses=frozenset({TaskStatus.ENQUEUED}), due_at=now)
            expected = [t.uid for t in store.tasks.get_many(range(len(made))) if query.matches(t)]
            assert sql.uids(query, limit=100) == expected
            assert followed.uids(query, limit=100) == expected
            assert loaded.uids(query, limit=100) == expected
            assert followed.count(query) == len(expected)
            # And the time a waiting lease call sleeps until: the earliest runAt still ahead.
            ahead = [
                t.extra["runAt"]
                for t in store.tasks.get_many(range(len(made)))
                if t.status == TaskStatus.ENQUEUED and t.extra and t.extra["runAt"] > now
            ]
            first = min(ahead, default=None)
            assert sql.next_run_at(now) == followed.next_run_at(now) == loaded.next_run_at(now) == first
    finally:
        sql.close()
        store.close()
