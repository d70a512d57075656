"""Tasks finished per second and counts per index: the in-memory index and SQL over the rows answer
what the tasks themselves say, for every key's scope."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings, strategies as st

from taskhub.server.index.memory import MemoryFinder
from taskhub.server.model import Scope, TaskStatus, TaskType
from taskhub.server.storage.sqlite.database import SqliteStorage
from taskhub.server.storage.sqlite.finder import SqlFinder

SECOND = 1_000_000
T0 = 1_700_000_000_000_000
WINDOW = 20  # seconds asked, from T0 + 5 s: some tasks finish before it, some after
scopes = st.sampled_from([None, Scope(names=frozenset({"a"})), Scope(prefixes=("mov",)), Scope()])
rows = st.lists(
    st.tuples(
        st.sampled_from(list(TaskStatus)),
        st.sampled_from([None, "a", "b", "movies"]),
        # Finished anywhere from before the window to after it, to the microsecond; None: not finished.
        st.one_of(st.none(), st.integers(T0, T0 + 30 * SECOND)),
    ),
    max_size=50,
)


def expected_activity(tasks, since: int, scope: Scope | None) -> dict[TaskStatus, list[int]]:
    counts: dict[TaskStatus, list[int]] = {}
    for task in tasks:
        if (
            not task.status.finished
            or task.finished_at is None
            or not since <= task.finished_at < since + WINDOW * SECOND
        ):
            continue
        if scope is not None and not scope.allows(task.index_uid):
            continue
        counts.setdefault(task.status, [0] * WINDOW)[(task.finished_at - since) // SECOND] += 1
    return counts


def expected_counts(tasks, scope: Scope | None) -> dict[str | None, dict[TaskStatus, int]]:
    counts: dict[str | None, dict[TaskStatus, int]] = {}
    for task in tasks:
        if scope is None or scope.allows(task.index_uid):
            per = counts.setdefault(task.index_uid, {})
            per[task.status] = per.get(task.status, 0) + 1
    return counts


@settings(max_examples=40, deadline=None)
@given(rows=rows, scope=scopes, deleted=st.integers(0, 3))
def test_finished_per_second_and_counts_per_index_match_the_tasks(tmp_path_factory, rows, scope, deleted):
    store = SqliteStorage(tmp_path_factory.mktemp("activity") / "tasks.db")
    followed = MemoryFinder()  # fed every commit, as a server's is
    made = []
    for status, index_uid, finished in rows:
        with store.transaction() as tx:
            [task] = tx.tasks.insert([(index_uid, TaskType.INDEX_CREATION, None, None)], T0)
        followed.apply(tx.changes)
        task = dataclasses.replace(task, status=status, finished_at=finished)
        with store.transaction() as tx:
            tx.tasks.save([task])
        followed.apply(tx.changes)
        made.append(task)
    # Deleted tasks leave both answers.
    with store.transaction() as tx:
        gone = tx.tasks.delete(range(deleted), frozenset(TaskStatus))
    followed.apply(tx.changes)
    kept = [t for t in made if t.uid not in {g.uid for g in gone}]
    loaded = MemoryFinder()
    loaded.reload(store)
    sql = SqlFinder(store.path)
    since = T0 + 5 * SECOND
    try:
        for finder in (followed, loaded, sql):
            assert finder.finished_per_second(since, WINDOW, scope) == expected_activity(kept, since, scope)
            assert finder.counts_by_index(scope) == expected_counts(kept, scope)
    finally:
        sql.close()
        store.close()
