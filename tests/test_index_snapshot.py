"""A task index saved to a snapshot and loaded back answers as the original did, and goes on doing so.

The originals are built through the index's public paths (`load` from rows, `apply` of
commits with deletions); a file that is torn, damaged or of another version loads as None.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from taskhub.server.index import snapshot
from taskhub.server.index.columns import DATES
from taskhub.server.index.dates import HOUR
from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import Scope, Task, TaskQuery, TaskStatus, TaskType

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000_000
INDEXES = [None, "a", "b", "movies", "mov-2"]
CANCELERS = [None, None, None, 7, 11, 4_000]
SPAN = 160 * HOUR  # the tasks' dates fall in this many hours after T0


def row(task: Task) -> tuple:
    """A task as `TaskIndex.load` takes it (`Store.index_rows`): -1 for nulls."""
    nulled = [-1 if value is None else value for value in (task.canceled_by, task.started_at, task.finished_at)]
    canceled_by, started, finished = nulled
    return (
        task.uid,
        int(task.status),
        int(task.type),
        canceled_by,
        task.enqueued_at,
        started,
        finished,
        task.index_uid,
    )


def a_task(rng: random.Random, uid: int) -> Task:
    enqueued = T0 + uid * (SPAN // 4_000) + rng.randrange(HOUR // 10)
    started = None if rng.random() < 0.2 else enqueued + rng.randrange(3 * HOUR)
    finished = None if started is None or rng.random() < 0.3 else started + rng.randrange(2 * HOUR)
    return Task(
        uid=uid,
        index_uid=rng.choice(INDEXES),
        status=rng.choice(list(TaskStatus)),
        type=rng.choice(list(TaskType)),
        enqueued_at=enqueued,
        canceled_by=rng.choice(CANCELERS),
        started_at=started,
        finished_at=finished,
        seq=uid,
    )


def changed(rng: random.Random, task: Task) -> Task:
    """A later state of `task`: a new status, a canceler, or a date moved (within its hour or out of it)."""
    move = rng.choice([1, 1, HOUR // 7, 5 * HOUR])
    return dataclasses.replace(
        task,
        status=rng.choice(list(TaskStatus)),
        canceled_by=rng.choice(CANCELERS),
        started_at=(task.enqueued_at if task.started_at is None else task.started_at + move),
        finished_at=None if rng.random() < 0.2 else (task.finished_at or task.enqueued_at) + move,
        seq=task.seq + 10_000,
    )


def commits(rng: random.Random, stored: dict[int, Task], new_uids: range) -> list[tuple[list[Task], frozenset[int]]]:
    """Commits as the store makes them: new tasks, held ones changed, some deleted (the oldest among them)."""
    out = []
    fresh = list(new_uids)
    while fresh or len(out) < 8:
        batch = [a_task(rng, uid) for uid in fresh[: rng.randrange(1, 200)]]
        fresh = fresh[len(batch) :]
        held = sorted(stored)
        batch += [changed(rng, stored[uid]) for uid in rng.sample(held, min(len(held), rng.randrange(60)))]
        gone = set(rng.sample(held, min(len(held), rng.randrange(30))))
        gone |= set(held[: rng.randrange(40)])  # a cleanup takes the oldest
        batch += [stored[uid] for uid in gone if uid not in {t.uid for t in batch}]
        for task in batch:
            stored[task.uid] = task
        for uid in gone:
            stored.pop(uid)
        out.append((batch, frozenset(gone)))
    return out


def build(seed: int, tasks: int = 3_000) -> tuple[TaskIndex, dict[int, Task]]:
    """An index of about `tasks` tasks: the first two thirds loaded from rows (some uids never
    given), then commits of new tasks, changes and deletions; some date bounds asked twice, so
    that the original holds sorted edge hours. Answers it and the tasks it holds."""
    rng = random.Random(seed)
    index, stored = TaskIndex(), {}
    loaded = [a_task(rng, uid) for uid in range(2 * tasks // 3) if uid % 17 != 5]
    for start in range(0, len(loaded), 500):
        index.load([row(task) for task in loaded[start : start + 500]])
    stored.update((task.uid, task) for task in loaded)
    for batch, gone in commits(rng, stored, range(2 * tasks // 3, tasks)):
        index.apply(batch, gone)
    for column in DATES:
        for _ in range(2):
            index.select(TaskQuery(**{f"after_{column}": T0 + 40 * HOUR + 12_345}))
    return index, stored


times = st.one_of(st.none(), st.integers(T0 - HOUR, T0 + SPAN + 6 * HOUR))


def sets(values):
    return st.one_of(st.none(), st.frozensets(st.sampled_from(values), max_size=3))


queries = st.builds(
    TaskQuery,
    uids=st.one_of(st.none(), st.frozensets(st.integers(0, 3_100), max_size=40)),
    index_uids=sets(["a", "b", "movies", "mov-2", "zzz"]),
    statuses=sets(list(TaskStatus)),
    types=sets(list(TaskType)),
    canceled_by=sets([7, 11, 4_000, 5]),
    before_enqueued_at=times,
    after_enqueued_at=times,
    before_started_at=times,
    after_started_at=times,
    before_finished_at=times,
    after_finished_at=times,
    below_uid=st.one_of(st.none(), st.integers(0, 3_100)),
    scope=st.one_of(
        st.none(),
        st.builds(Scope, names=st.frozensets(st.sampled_from(["a", "b"])), prefixes=st.sampled_from([(), ("mov",)])),
    ),
)
# A date bound alone is paged from its hours' stats, a path of its own.
lone_dates = st.sampled_from(DATES).flatmap(
    lambda column: st.builds(
        lambda after, before: TaskQuery(**{f"after_{column}": after, f"before_{column}": before}), times, times
    )
)
# Index and status (and type) together have bitmaps of their own.
pairs = st.builds(
    TaskQuery,
    index_uids=st.frozensets(st.sampled_from(["a", "b", "movies", "zzz"]), min_size=1, max_size=3),
    statuses=st.frozensets(st.sampled_from(list(TaskStatus)), min_size=1, max_size=3),
    types=st.one_of(st.none(), st.frozensets(st.sampled_from(list(TaskType)), min_size=1, max_size=3)),
)


def random_query(rng: random.Random) -> TaskQuery:
    """A query from a plain random generator, for checks repeated after each commit."""
    fields = {}
    if rng.random() < 0.4:
        fields["statuses"] = frozenset(rng.sample(list(TaskStatus), rng.randrange(1, 3)))
    if rng.random() < 0.4:
        fields["index_uids"] = frozenset(rng.sample(INDEXES[1:], rng.randrange(1, 3)))
    if rng.random() < 0.3:
        fields["types"] = frozenset(rng.sample(list(TaskType), rng.randrange(1, 4)))
    if rng.random() < 0.2:
        fields["canceled_by"] = frozenset({rng.choice([7, 11, 4_000])})
    for name in TaskQuery.DATE_FIELDS:
        if rng.random() < 0.15:
            fields[name] = T0 + rng.randrange(SPAN + 6 * HOUR)
    return TaskQuery(**fields)


def answers(index: TaskIndex, query: TaskQuery) -> tuple:
    """What `index` answers `query`: the uids, and pages from either end and from a uid in the middle."""
    return (
        list(index.select(query)),
        index.page(query, limit=7, from_uid=None, reverse=False),
        index.page(query, limit=7, from_uid=None, reverse=True),
        index.page(query, limit=3, from_uid=1_500, reverse=False),
        index.page(query, limit=3, from_uid=1_500, reverse=True),
    )


def saved_and_loaded(index: TaskIndex, folder: Path, *, seq: int = 1, epoch: str = "e") -> TaskIndex:
    path = folder / "index.snapshot"
    snapshot.save(index, path, seq=seq, epoch=epoch)
    loaded = snapshot.load(path)
    assert loaded is not None
    assert (loaded.seq, loaded.epoch) == (seq, epoch)
    return loaded.index


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[TaskIndex, TaskIndex]:
    original, _ = build(seed=1)
    return original, saved_and_loaded(original, tmp_path_factory.mktemp("snap"))


def test_the_built_index_is_varied(pair):
    # The comparisons below mean something only if the original holds what the queries ask about.
    original, _ = pair
    assert len(original.all) > 1_500
    assert min(original.all) > 0  # the oldest were deleted: the columns start later than uid 0
    assert len(original.hours["enqueued_at"]) > 100
    assert set(original.indexes) == set(INDEXES[1:])
    assert {7, 11, 4_000} <= set(original.cancelers)
    assert any(not bits for bits in original.buckets["started_at"].values())  # hours emptied by deletions


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.one_of(queries, lone_dates, pairs),
    limit=st.integers(0, 30),
    from_uid=st.one_of(st.none(), st.integers(0, 3_100)),
    reverse=st.booleans(),
)
def test_a_loaded_snapshot_answers_as_the_original(pair, query, limit, from_uid, reverse):
    original, loaded = pair
    assert list(loaded.select(query)) == list(original.select(query))
    for _ in range(2):  # the second time an edge hour is asked, it is read from its sorted times
        assert loaded.page(query, limit=limit, from_uid=from_uid, reverse=reverse) == original.page(
            query, limit=limit, from_uid=from_uid, reverse=reverse
        )


def test_a_loaded_snapshot_holds_what_the_original_holds(pair):
    original, loaded = pair

    def maps(index: TaskIndex) -> dict:  # every bitmap by what it stands for, empty ones too
        tables = {**index._sets, **index.buckets}
        return {(kind, key): set(bits) for kind, table in tables.items() for key, bits in table.items()}

    assert maps(loaded) == maps(original)
    assert set(loaded.all) == set(original.all)
    kept, had = loaded.columns, original.columns
    for column in kept.arrays.values():  # past the newest task, as in freshly grown columns
        assert (column[max(loaded.all) + 1 - kept.base :] == -1).all()
    for column in DATES:
        assert loaded.hours[column] == original.hours[column]
        assert (loaded.dates._hour_stats[column] == original.dates._hour_stats[column]).all()
    assert kept.names == had.names
    # Room for the same uids before the columns grow again.
    assert kept.base + len(kept.arrays["status"]) == had.base + len(had.arrays["status"])
    for uid in original.all:
        for name, column in had.arrays.items():
            assert kept.arrays[name][uid - kept.base] == column[uid - had.base], (name, uid)


@pytest.mark.parametrize("seed", [2, 3])
def test_a_loaded_index_follows_later_commits_as_the_original(tmp_path, seed):
    original, stored = build(seed)
    loaded = saved_and_loaded(build(seed)[0], tmp_path)
    rng = random.Random(seed)
    asked = [random_query(rng) for _ in range(60)]
    # New uids past the columns' room (they grow), then a cleanup of all but the newest (they shift).
    later = commits(rng, stored, range(3_000, 40_000, 7))
    later.append(([stored[uid] for uid in sorted(stored)[:-50]], frozenset(sorted(stored)[:-50])))
    for batch, gone in later:
        original.apply(batch, gone)
        loaded.apply(batch, gone)
        for query in rng.sample(asked, 10):
            assert answers(loaded, query) == answers(original, query), query
    assert len(original.all) == 50
    assert [answers(loaded, query) for query in asked] == [answers(original, query) for query in asked]


@pytest.mark.parametrize("spare", ["none", "enough", "too small"])
def test_a_state_copied_then_written_holds_the_index_as_it_was_copied(tmp_path, spare):
    # The copy is taken while writers wait and written after they went on: what they did since is not in it.
    index, stored = build(seed=4, tasks=1_200)
    columns = {"none": None, "enough": index.spare_columns(), "too small": index.spare_columns(room=0)}[spare]
    if spare == "too small":
        index.apply([a_task(random.Random(5), max(index.all) + 1)])  # one more task than the spare columns hold
    state = index.to_state(columns)
    before = TaskIndex.from_state(index.to_state())  # the index as it stood when the copy was taken
    rng = random.Random(6)
    for batch, gone in commits(rng, dict(stored), range(5_000, 6_000)):
        index.apply(batch, gone)
    snapshot.save(state, tmp_path / "copy.snapshot", seq=9, epoch="e")
    loaded = snapshot.load(tmp_path / "copy.snapshot")
    assert loaded is not None and loaded.seq == 9
    asked = [random_query(rng) for _ in range(100)] + [TaskQuery()]
    assert [answers(loaded.index, query) for query in asked] == [answers(before, query) for query in asked]
    assert [answers(loaded.index, query) for query in asked] != [answers(index, query) for query in asked]


def test_an_empty_index_round_trips_and_fills(tmp_path):
    loaded = saved_and_loaded(TaskIndex(), tmp_path)
    assert list(loaded.select(TaskQuery())) == []
    assert loaded.page(TaskQuery(after_enqueued_at=T0), limit=5, from_uid=None, reverse=False) == ([], 0)
    rng = random.Random(7)
    tasks = [a_task(rng, uid) for uid in range(100)]
    fresh = TaskIndex()
    for index in (loaded, fresh):
        index.apply(tasks)
    for query in [random_query(rng) for _ in range(50)]:
        assert answers(loaded, query) == answers(fresh, query)


def test_a_state_that_does_not_fit_together_is_refused():
    index, _ = build(seed=13, tasks=300)

    def broken(change) -> dict:
        state = index.to_state()
        change(state)
        return state

    def swap(state, at, entry) -> None:
        state.maps[at] = entry

    for state in (
        broken(lambda s: setattr(s, "used", s.capacity + 1)),
        broken(lambda s: s.columns.__setitem__("status", s.columns["status"].astype("int64"))),
        broken(lambda s: s.columns.pop("finished_at")),
        broken(lambda s: swap(s, 1, ("colour", 1, s.maps[1][2]))),
        broken(lambda s: swap(s, 1, ("status", 99, s.maps[1][2]))),
        broken(lambda s: swap(s, 1, (s.maps[1][0], s.maps[1][1], b"not a bitmap"))),
        broken(lambda s: s.names.append(s.names[0])),
    ):
        with pytest.raises(ValueError):
            TaskIndex.from_state(state)
    assert list(TaskIndex.from_state(index.to_state()).all) == list(index.all)


def test_save_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path):
    index, _ = build(seed=8, tasks=600)
    path = tmp_path / "index.snapshot"
    snapshot.save(index, path, seq=1, epoch="one")
    index.apply([a_task(random.Random(9), 10_000)])
    snapshot.save(index, path, seq=2, epoch="two")
    loaded = snapshot.load(path)
    assert (loaded.seq, loaded.epoch) == (2, "two")
    assert 10_000 in loaded.index.all
    assert os.listdir(tmp_path) == ["index.snapshot"]


# -- files that cannot be trusted ----------------------------------------------------------


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> bytes:
    """A snapshot of a few tasks: small enough to damage at every byte."""
    rng = random.Random(10)
    index = TaskIndex()
    index.apply([a_task(rng, uid) for uid in range(12)], frozenset({3}))
    path = tmp_path_factory.mktemp("small") / "small.snapshot"
    snapshot.save(index, path, seq=5, epoch="e")
    return path.read_bytes()


def loads_as_none(path: Path, data: bytes, caplog, why: str) -> None:
    path.write_bytes(data)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=snapshot.__name__):
        assert snapshot.load(path) is None
    assert why in caplog.text, caplog.text


def test_the_small_file_loads(tmp_path, small_file):
    path = tmp_path / "s.snapshot"
    path.write_bytes(small_file)
    loaded = snapshot.load(path)
    assert loaded is not None and loaded.seq == 5 and len(loaded.index.all) == 11


def test_a_file_cut_anywhere_loads_as_none(tmp_path, small_file, caplog):
    for length in range(len(small_file)):
        loads_as_none(tmp_path / "s.snapshot", small_file[:length], caplog, "truncated")
    loads_as_none(tmp_path / "s.snapshot", small_file + b"\0", caplog, "overlong")


def test_a_byte_changed_anywhere_loads_as_none(tmp_path, small_file, caplog):
    for at in range(len(small_file)):
        for flip in (0x01, 0xFF):
            damaged = bytearray(small_file)
            damaged[at] ^= flip
            loads_as_none(tmp_path / "s.snapshot", bytes(damaged), caplog, "not loaded")
    # And each part says why.
    for at, why in ((0, "magic"), (30, "header's checksum"), (len(small_file) - 10, "data's checksum")):
        damaged = bytearray(small_file)
        damaged[at] ^= 0x20
        loads_as_none(tmp_path / "s.snapshot", bytes(damaged), caplog, why)


def test_a_big_file_damaged_in_its_columns_loads_as_none(tmp_path, caplog):
    index, _ = build(seed=11, tasks=1_500)
    path = tmp_path / "big.snapshot"
    snapshot.save(index, path, seq=1, epoch="e")
    data = path.read_bytes()
    for at in random.Random(12).sample(range(len(data) // 2, len(data) - 4), 20):
        damaged = bytearray(data)
        damaged[at] ^= 0x04
        loads_as_none(path, bytes(damaged), caplog, "data's checksum")


def test_another_format_version_loads_as_none(tmp_path, small_file, caplog):
    for version in (0, snapshot.VERSION + 1):
        other = bytearray(small_file)
        struct.pack_into("<I", other, 8, version)
        loads_as_none(tmp_path / "s.snapshot", bytes(other), caplog, f"format version {version}")


def test_a_missing_or_foreign_file_loads_as_none(tmp_path, caplog):
    assert snapshot.load(tmp_path / "none.snapshot") is None
    loads_as_none(tmp_path / "x.snapshot", b"SQLite format 3\0" + bytes(200), caplog, "magic")
    loads_as_none(tmp_path / "x.snapshot", b"", caplog, "truncated")
    (tmp_path / "folder.snapshot").mkdir()
    with caplog.at_level(logging.WARNING, logger=snapshot.__name__):
        assert snapshot.load(tmp_path / "folder.snapshot") is None
    assert "not loaded" in caplog.text


@pytest.mark.slow  # a real process killed while it saves
def test_a_save_killed_midway_leaves_the_last_snapshot_whole(tmp_path):
    # A process saving in a loop is killed at some point of some save: the path holds the
    # last whole snapshot, and the next save writes over the leftover temporary file.
    path = tmp_path / "index.snapshot"
    script = textwrap.dedent(
        f"""
        import sys
        from taskhub.server.index import snapshot
        from taskhub.server.index.task_index import TaskIndex
        from taskhub.server.model import Task, TaskStatus, TaskType

        index = TaskIndex()
        index.apply([
            Task(uid=uid, index_uid="a", status=TaskStatus.SUCCEEDED, type=TaskType.INDEX_UPDATE,
                 enqueued_at={T0} + uid * 1_000_000, started_at={T0} + uid * 1_000_000 + 7)
            for uid in range(200_000)
        ])
        seq = 0
        while True:
            seq += 1
            snapshot.save(index, {str(path)!r}, seq=seq, epoch="e")
            print(seq, flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / part) for part in ("client", "server", "gateway"))}
    saver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert saver.stdout.readline().strip() == "1"
        deadline = time.monotonic() + 30
        while not path.with_name(f"{path.name}.{saver.pid}.tmp").exists() and time.monotonic() < deadline:
            time.sleep(0.001)  # the next save has begun: kill it while it writes
        saver.send_signal(signal.SIGKILL)
        saver.wait(timeout=30)
    finally:
        if saver.poll() is None:
            saver.kill()
    loaded = snapshot.load(path)
    assert loaded is not None and loaded.seq >= 1
    assert len(loaded.index.all) == 200_000
    snapshot.save(TaskIndex(), path, seq=loaded.seq + 1, epoch="e")
    assert os.listdir(tmp_path) == ["index.snapshot"]
