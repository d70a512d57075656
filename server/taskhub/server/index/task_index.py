"""An in-memory index of every task's filterable fields: a list and its total in milliseconds.

Roaring bitmaps of uids per status, type, index and canceling task answer the set
filters, with bitmaps of their own for (index, status) and (index, status, type) taken
together; per-hour buckets of uids per date column, refined at the two edge hours with
the exact times, answer the date bounds. `total` is the size of the answer, and the
page is a slice of it by rank. A date bound alone is paged from its hours without their
union, by each hour's size and smallest and largest uid, kept in one array; an edge hour
asked again has its times sorted, for binary search. The writing `Store` builds it from
its rows and feeds it every committed change in commit order, on the store thread;
leasing and matching read it there, lists read it on the event loop under the store's
`index_lock`. It holds no SQL and sees only domain tasks. Per-uid columns live in numpy
arrays (38 bytes a task).
"""

from __future__ import annotations

import array
import bisect
import functools
import itertools
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyroaring import BitMap

from taskhub.server.model import STATUS_OF, TYPE_OF, Task, TaskQuery, TaskStatus, TaskType

HOUR = 3_600_000_000  # microseconds


def bitmap(uids: np.ndarray) -> BitMap:
    """A bitmap from a numpy array of uids, through a buffer (a list would make a Python int of each)."""
    values = array.array("I")
    values.frombytes(uids.astype(np.uint32).tobytes())
    return BitMap(values)


def uids_of(bits: BitMap) -> np.ndarray:
    return np.frombuffer(bits.to_array(), dtype=np.uint32).astype(np.int64)


DATES = ("enqueued_at", "started_at", "finished_at")
NONE = -1
# The per-uid columns and their types (NONE where a task has no value).
COLUMNS = (
    ("status", np.int8),
    ("type", np.int8),
    ("index", np.int32),
    ("canceled_by", np.int64),
    *((column, np.int64) for column in DATES),
)
PAIR = 8  # (index id, status) packed as index_id * PAIR + status; statuses are 1 to 5
TRIPLE = 16  # (index id, status, type) packed as pair * TRIPLE + type; types are 1 to 11
SIZE, LOW, HIGH = 0, 1, 2  # the columns of an hour's stats: its bucket's size, smallest and largest uid
EMPTY = (0, 2**62, -1)  # an empty bucket's stats: it sorts last whichever end a page starts from


def _union(maps: list[BitMap]) -> BitMap:
    """The union of some bitmaps; one alone is answered as itself, not copied (a copy costs O(n))."""
    if len(maps) == 1:
        return maps[0]
    return BitMap.union(BitMap(), *maps)


def _lone_date(query: TaskQuery) -> tuple[str, int | None, int | None] | None:
    """(column, after, before) when `query` bounds one date column and filters nothing else."""
    if (
        query.uids is not None
        or query.below_uid is not None
        or query.index_uids is not None
        or query.statuses is not None
        or query.types is not None
        or query.canceled_by is not None
        or query.scope is not None
    ):
        return None
    bounded = [(column, getattr(query, "after_" + column), getattr(query, "before_" + column)) for column in DATES]
    bounded = [bounds for bounds in bounded if bounds[1] is not None or bounds[2] is not None]
    return bounded[0] if len(bounded) == 1 else None


def _page_of_disjoint(
    parts: Sequence[BitMap | Callable[[], BitMap]],
    stats: np.ndarray,
    *,
    limit: int,
    from_uid: int | None,
    reverse: bool,
) -> tuple[list[int], int]:
    """`TaskIndex.page` over the union of disjoint bitmaps, without making the union.

    `stats` holds each part's size, smallest and largest uid, a row a part. A part whose
    first uid in list order is past the page's last cannot add to it: the page is filled
    from the parts that start soonest, and only parts starting before its end are read.
    A part may be a function that makes its bitmap, called only if the part is read; its
    smallest and largest uid may then be bounds, which only makes it read sooner.
    """
    total = int(stats[:, SIZE].sum())
    want = limit + 1
    bounds: list[int] | None = None  # where each part's eligible uids start (ascending) or end (descending)
    firsts: np.ndarray | list[int]  # each part's first uid in list order
    if from_uid is None or (reverse and from_uid <= 0):  # from either end: the parts' own min or max
        firsts = stats[:, LOW if reverse else HIGH]
        ranked = np.argsort(firsts, kind="stable")  # empty parts sort last from either end (EMPTY)
        order = (ranked if reverse else ranked[::-1]).tolist()
    else:
        made = [part if isinstance(part, BitMap) else part() for part in parts]
        ranks = [part.rank(from_uid - 1) if reverse else part.rank(from_uid) for part in made]
        kept = [i for i, at in enumerate(ranks) if (at < len(made[i]) if reverse else at)]
        firsts = [made[i][ranks[i] if reverse else ranks[i] - 1] for i in kept]
        parts, bounds = [made[i] for i in kept], [ranks[i] for i in kept]
        order = sorted(range(len(parts)), key=firsts.__getitem__, reverse=not reverse)
    page: list[int] = []
    for i in order:
        if len(page) >= want and (firsts[i] > page[-1] if reverse else firsts[i] < page[-1]):
            break
        part = parts[i]
        if not isinstance(part, BitMap):
            part = part()
        at = bounds[i] if bounds is not None else 0 if reverse else len(part)
        taken = part[at : at + want] if reverse else part[max(0, at - want) : at]
        page = sorted(page + list(taken), reverse=not reverse)[:want]
    return page, total


def _stats(part: BitMap) -> tuple[int, int, int]:
    return (len(part), part.min(), part.max()) if part else EMPTY


def _sorted_span(edge: tuple[np.ndarray, np.ndarray], low: int | None, high: int | None) -> tuple[int, int]:
    """Where an edge hour's sorted times are strictly between `low` and `high`: [start, end), by binary search."""
    times, _ = edge
    start = 0 if low is None else int(times.searchsorted(low, "right"))
    end = len(times) if high is None else int(times.searchsorted(high, "left"))
    return start, end


def _cut_sorted(edge: tuple[np.ndarray, np.ndarray], bucket: BitMap, start: int, end: int) -> BitMap:
    """The uids at a non-empty [start, end) of an edge hour's sorted times, as a bitmap."""
    _, uids = edge
    if 2 * (end - start) > len(uids):  # most of the hour: take the rest away
        return bucket - bitmap(np.concatenate((uids[:start], uids[end:])))
    kept = uids[start:end]
    first, last = int(kept.min()), int(kept.max())
    if last - first + 1 == len(kept):  # distinct uids as many as their range: all of it, a run
        run = BitMap()
        run.add_range(first, last + 1)
        return run
    return bitmap(kept)


@dataclass
class IndexState:
    """A copy of a `TaskIndex`'s contents, apart from the index's own: what a snapshot holds.

    Bitmaps are in roaring's portable serialization (a copy made faster than `BitMap.copy`,
    and what a file holds) and keys are plain (ints, strings and lists of them) so that they
    write as JSON. Caches are left out: the hours' order and stats are rebuilt from the
    buckets, and edge hours are sorted again when asked twice.
    """

    base: int  # the uid at position 0 of the columns
    used: int  # positions of the columns holding values; past it they hold NONE
    capacity: int  # the columns' length in the index: room for uids before the next growth
    names: list[str]  # index uids by their id in the "index" column
    maps: list[tuple[str, object, bytes | memoryview]]  # (kind, key, uids): "all", a set, a date column by hour
    columns: dict[str, np.ndarray]  # by name (`COLUMNS`), each at least `used` long


def _plain_key(kind: str, key: Any) -> object:
    """A bitmap's key as JSON holds it: enums as ints, tuples as lists."""
    if kind == "index":
        return key
    if kind in ("index_status", "index_status_type"):
        return [key[0], *map(int, key[1:])]
    return None if key is None else int(key)


def _typed_key(kind: str, key: Any) -> Any:
    """`_plain_key` undone; a key of the wrong shape raises (KeyError, TypeError or ValueError).

    Typed Any: what it answers (a status, a type, a tuple, a name or a number) depends on `kind`.
    """
    if kind == "status":
        return STATUS_OF[key]
    if kind == "type":
        return TYPE_OF[key]
    if kind == "index_status":
        name, status = key
        return str(name), STATUS_OF[status]
    if kind == "index_status_type":
        name, status, type_ = key
        return str(name), STATUS_OF[status], TYPE_OF[type_]
    if not isinstance(key, str if kind == "index" else int):
        raise TypeError(f"a {kind} key must not be {key!r}")
    return key


class TaskIndex:
    """Which uids have which status, type, index, canceler and dates."""

    SORTED_EDGES = 64  # edge hours kept sorted at most (each one's memory grows with the queue)

    def __init__(self) -> None:
        self.all = BitMap()
        self.statuses: dict[TaskStatus, BitMap] = defaultdict(BitMap)
        self.types: dict[TaskType, BitMap] = defaultdict(BitMap)
        self.indexes: dict[str, BitMap] = defaultdict(BitMap)
        self.cancelers: dict[int, BitMap] = defaultdict(BitMap)
        # Index and status together, the commonest pair of filters: one lookup instead of an
        # intersection whose cost grows with the queue (bench/README.md, Defaults chosen by measurement).
        self.index_statuses: dict[tuple[str, TaskStatus], BitMap] = defaultdict(BitMap)
        # And with the type, for the three together: their intersection's cost grows with the pair's
        # bitmap (a busy index's failures, say), a lookup's does not.
        self.index_status_types: dict[tuple[str, TaskStatus, TaskType], BitMap] = defaultdict(BitMap)
        self.buckets: dict[str, dict[int, BitMap]] = {column: {} for column in DATES}
        # Every set's bitmaps by kind, keyed as the kind says (`_typed_key`).
        self._sets: dict[str, dict[Any, BitMap]] = {
            "status": self.statuses,
            "type": self.types,
            "index": self.indexes,
            "canceled_by": self.cancelers,
            "index_status": self.index_statuses,
            "index_status_type": self.index_status_types,
        }
        self.hours: dict[str, list[int]] = {column: [] for column in DATES}  # sorted bucket keys
        # The buckets in the order of `hours`: a range of hours is a slice, not a lookup an hour.
        self._hour_maps: dict[str, list[BitMap]] = {column: [] for column in DATES}
        # And their sizes, smallest and largest uids, a row an hour: a lone date bound's total and
        # page read these few contiguous lines instead of every hour's bucket, which is what a list
        # costs when other work has swept the CPU caches (a week's total: 169 buckets).
        self._hour_stats: dict[str, np.ndarray] = {column: np.zeros((0, 3), np.int64) for column in DATES}
        # Edge hours' times sorted, with their uids in that order, for hours asked twice with no
        # change between: a bound inside a settled hour is then two binary searches. Dropped when
        # the hour's bucket changes; the hour being written to is rebuilt too often to keep.
        self._sorted_edges: dict[tuple[str, int], tuple[np.ndarray, np.ndarray] | None] = {}
        self._edges_lock = threading.Lock()
        self._index_names: list[str] = []
        self._index_ids: dict[str, int] = {}
        self._columns: dict[str, np.ndarray] = {}
        self._base = 0  # the uid at position 0 of every column
        self._grow(1024)

    # -- per-uid columns --------------------------------------------------

    def _grow(self, end: int) -> None:
        """Makes room for uids below `end`.

        The columns start at `_base`, the oldest uid they may hold: uids only grow and
        the oldest tasks get deleted, so before growing, the prefix of uids no longer
        stored is dropped. Memory follows the tasks stored, not the uids ever given.
        A uid older than `_base` (none comes today: uids are never given twice, and dumps
        load into an empty store) moves the start back rather than wrap around.
        """
        if self.all and self.all.min() < self._base:
            back = self._base - self.all.min()
            for name, column in self._columns.items():
                self._columns[name] = np.concatenate((np.full(back, NONE, dtype=column.dtype), column))
            self._base -= back
        size = len(self._columns.get("status", ()))
        if end - self._base <= size:
            return
        oldest = self.all.min() if self.all else end - 1
        if oldest > self._base:
            shift = min(oldest, self._base + size) - self._base
            for column in self._columns.values():
                column[: size - shift] = column[shift:]
                column[size - shift :] = NONE
            self._base += shift
        needed = end - self._base
        if needed <= size:
            return
        size = max(needed, size * 2)
        for name, dtype in COLUMNS:
            grown = np.full(size, NONE, dtype=dtype)
            old = self._columns.get(name)
            if old is not None:
                grown[: len(old)] = old
            self._columns[name] = grown

    def _index_id(self, name: str | None) -> int:
        if name is None:
            return NONE
        found = self._index_ids.get(name)
        if found is None:
            found = self._index_ids[name] = len(self._index_names)
            self._index_names.append(name)
        return found

    # -- snapshots --------------------------------------------------------

    def spare_columns(self, room: int = 1 << 16) -> dict[str, np.ndarray]:
        """Columns for `to_state` to copy into, sized for the tasks stored now and `room` more.

        Made, and their memory touched, before writers are kept out: a fresh copy's page
        faults cost more than the copy itself, and with these `to_state` only moves bytes.
        Needs no lock: a size read while the store thread writes is at worst too small, and
        `to_state` then copies into new columns instead.
        """
        stored = self.all.max() + 1 - self.all.min() if self.all else 0
        return {name: np.full(stored + room, NONE, dtype) for name, dtype in COLUMNS}  # written, so touched now

    def to_state(self, spare: dict[str, np.ndarray] | None = None) -> IndexState:
        """A copy of the contents, which later changes to the index leave alone.

        Fast enough to take while writers wait (the store's `index_lock`, or on the store
        thread): bitmaps are serialized, columns sliced to the stored uids and copied (into
        `spare_columns` if given and big enough). Writing the copy out (`snapshot.save`)
        needs no lock.
        """
        low = self.all.min() - self._base if self.all else 0
        high = self.all.max() + 1 - self._base if self.all else 0
        maps: list[tuple[str, object, bytes | memoryview]] = [("all", None, self.all.serialize())]
        for kind, table in self._sets.items():
            maps += [(kind, _plain_key(kind, key), bits.serialize()) for key, bits in table.items()]
        for date, table in self.buckets.items():
            maps += [(date, hour, bits.serialize()) for hour, bits in table.items()]
        # Positions below the oldest stored uid and above the newest are never read (a deleted
        # task's columns keep its last values): the copy starts and ends with the tasks stored,
        # and the index's room for new uids is kept as a length.
        columns = {}
        for name, column in self._columns.items():
            target = None if spare is None else spare.get(name)
            if target is None or len(target) < high - low or target.dtype != column.dtype:
                columns[name] = column[low:high].copy()
            else:
                columns[name] = target[: high - low]
                columns[name][:] = column[low:high]
        return IndexState(
            base=self._base + low,
            used=high - low,
            capacity=len(self._columns["status"]) - low,
            names=list(self._index_names),
            maps=maps,
            columns=columns,
        )

    @classmethod
    def from_state(cls, state: IndexState) -> TaskIndex:
        """An index holding `state`'s contents; it takes the state's columns as its own.

        A column already `capacity` long is used as it is (a snapshot is read into such
        columns); a shorter one is copied into one. A state that does not fit together raises
        ValueError.
        """
        if not 0 <= state.used <= state.capacity or state.base < 0:
            raise ValueError(f"columns of {state.used} uids from {state.base} in room for {state.capacity}")
        index = cls()
        columns = {}
        for name, dtype in COLUMNS:
            column = state.columns.get(name)
            if column is None or column.dtype != dtype or column.ndim != 1 or len(column) < state.used:
                raise ValueError(f"column {name} missing or not {state.used} values of {np.dtype(dtype)}")
            if len(column) < state.capacity:
                grown = np.full(state.capacity, NONE, dtype=dtype)
                grown[: state.used] = column[: state.used]
                column = grown
            columns[name] = column
        index._columns, index._base = columns, state.base
        index._index_names = list(state.names)
        index._index_ids = {name: i for i, name in enumerate(index._index_names)}
        if len(index._index_ids) != len(index._index_names):
            raise ValueError("an index uid is named twice")
        try:
            for kind, key, data in state.maps:
                # pyroaring's stub says bytes; it reads any buffer, as the snapshot's memoryview slices.
                bits = BitMap.deserialize(data)  # type: ignore[arg-type]
                if kind == "all":
                    index.all = bits
                elif kind in DATES:
                    index.buckets[kind][_typed_key(kind, key)] = bits
                else:
                    index._sets[kind][_typed_key(kind, key)] = bits
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"a bitmap, its kind or its key is not one of an index: {exc!r}") from exc
        for date, table in index.buckets.items():
            hours = index.hours[date] = sorted(table)
            maps = index._hour_maps[date] = [table[hour] for hour in hours]
            index._hour_stats[date] = np.array([_stats(bits) for bits in maps], dtype=np.int64).reshape(-1, 3)
        return index

    # -- keeping in step --------------------------------------------------

    def load(self, rows: list[tuple]) -> None:
        """Adds a chunk of stored tasks, vectorized: rows of (uid, status, type, canceled_by,
        enqueued_at, started_at, finished_at, index_uid) with -1 for nulls, as the store reads them."""
        if not rows:
            return
        numbers = np.array([row[:7] for row in rows], dtype=np.int64)
        uids = numbers[:, 0]
        self.all |= bitmap(uids)
        self._grow(int(uids.max()) + 1)
        columns, at = self._columns, uids - self._base
        sets: tuple[tuple[int, str, dict[Any, BitMap], Callable[[int], object]], ...] = (
            (1, "status", self.statuses, TaskStatus),
            (2, "type", self.types, TaskType),
        )
        for position, name, maps, kind in sets:
            values = numbers[:, position]
            columns[name][at] = values
            for value in np.unique(values):
                maps[kind(int(value))] |= bitmap(uids[values == value])
        cancelers = numbers[:, 3]
        columns["canceled_by"][at] = cancelers
        for canceler in np.unique(cancelers[cancelers != NONE]):
            self.cancelers[int(canceler)] |= bitmap(uids[cancelers == canceler])
        index_ids = np.array([self._index_id(row[7]) for row in rows], dtype=np.int32)
        columns["index"][at] = index_ids
        for index_id in np.unique(index_ids[index_ids != NONE]):
            self.indexes[self._index_names[index_id]] |= bitmap(uids[index_ids == index_id])
        # (index, status) pairs and (index, status, type) triples: grouped by one stable sort
        # each, so uids stay ascending in each group.
        indexed = index_ids != NONE
        pairs = index_ids[indexed].astype(np.int64) * PAIR + numbers[indexed, 1]
        names = self._index_names
        groupings: tuple[tuple[np.ndarray, dict[Any, BitMap], Callable[[int], tuple[object, ...]]], ...] = (
            (pairs, self.index_statuses, lambda key: (names[key // PAIR], STATUS_OF[key % PAIR])),
            (
                pairs * TRIPLE + numbers[indexed, 2],
                self.index_status_types,
                lambda key: (names[key // TRIPLE // PAIR], STATUS_OF[key // TRIPLE % PAIR], TYPE_OF[key % TRIPLE]),
            ),
        )
        for keys, table, key_of in groupings:
            order = np.argsort(keys, kind="stable")
            keys, grouped = keys[order], uids[indexed][order]
            starts = np.flatnonzero(np.diff(keys, prepend=-1))
            for start, end in zip(starts, [*starts[1:], len(keys)]):
                table[key_of(int(keys[start]))] |= bitmap(grouped[start:end])
        for position, column in zip((4, 5, 6), DATES):
            values = numbers[:, position]
            columns[column][at] = values
            dated = values != NONE
            hours = values[dated] // HOUR
            for hour in np.unique(hours).tolist():
                self._bucket(column, hour).update(bitmap(uids[dated][hours == hour]))
                self._restat(column, hour)

    def apply(self, tasks: Iterable[Task], deleted: frozenset[int] = frozenset()) -> None:
        """Takes one commit's changes: each task's last state counts; the `deleted` ones (among `tasks`) leave."""
        latest = {task.uid: task for task in tasks}
        self._unlink_many([uid for uid in deleted if uid in latest and uid in self.all])
        self._set_many([task for uid, task in latest.items() if uid not in deleted])

    def _set_many(self, tasks: list[Task]) -> None:
        """Puts tasks in their new state, new ones and held ones alike, each bitmap updated once per commit.

        A held task leaves and joins only the bitmaps of the fields that changed: a lease or a
        report changes a status and a date, and the task's type, index and enqueue hour stay put.
        """
        if not tasks:
            return
        uids = [task.uid for task in tasks]
        held = [uid in self.all for uid in uids]
        self.all.update(uids)  # before growing: the columns keep what `all` holds from its oldest uid on
        self._grow(max(uids) + 1)
        at = np.array(uids, dtype=np.int64) - self._base
        # A task the index does not hold has no old values (a deleted task's columns keep its last ones).
        old = {name: np.where(held, column[at], NONE).tolist() for name, column in self._columns.items()}
        new: dict[str, list[int]] = {name: [] for name in self._columns}
        leave: dict[tuple, list[int]] = defaultdict(list)
        join: dict[tuple, list[int]] = defaultdict(list)
        moved: list[tuple[str, int]] = []
        names = self._index_names
        for i, task in enumerate(tasks):
            uid, status, type_ = task.uid, int(task.status), int(task.type)
            index_id = self._index_id(task.index_uid)
            canceled_by = NONE if task.canceled_by is None else task.canceled_by
            was_status, was_index, was_type = old["status"][i], old["index"][i], old["type"][i]
            if status != was_status:
                if was_status != NONE:
                    leave["status", STATUS_OF[was_status]].append(uid)
                join["status", task.status].append(uid)
            if type_ != was_type:
                if was_type != NONE:
                    leave["type", TYPE_OF[was_type]].append(uid)
                join["type", task.type].append(uid)
            if index_id != was_index:
                if was_index != NONE:
                    leave["index", names[was_index]].append(uid)
                if index_id != NONE:
                    join["index", task.index_uid].append(uid)
            if index_id != was_index or status != was_status:
                if was_index != NONE:
                    leave["index_status", (names[was_index], STATUS_OF[was_status])].append(uid)
                if index_id != NONE:
                    join["index_status", (task.index_uid, task.status)].append(uid)
            if index_id != was_index or status != was_status or type_ != was_type:
                if was_index != NONE:
                    old_key = (names[was_index], STATUS_OF[was_status], TYPE_OF[was_type])
                    leave["index_status_type", old_key].append(uid)
                if index_id != NONE:
                    join["index_status_type", (task.index_uid, task.status, task.type)].append(uid)
            if canceled_by != old["canceled_by"][i]:
                if old["canceled_by"][i] != NONE:
                    leave["canceled_by", old["canceled_by"][i]].append(uid)
                if canceled_by != NONE:
                    join["canceled_by", canceled_by].append(uid)
            new["status"].append(status)
            new["type"].append(type_)
            new["index"].append(index_id)
            new["canceled_by"].append(canceled_by)
            for column in DATES:
                value, was = getattr(task, column), old[column][i]
                value = NONE if value is None else value
                new[column].append(value)
                if was // HOUR != value // HOUR:  # NONE // HOUR is -1, an hour no time falls in
                    if was != NONE:
                        leave[column, was // HOUR].append(uid)
                    if value != NONE:
                        join[column, value // HOUR].append(uid)
                elif value != was:  # another time in the same hour: its sorted times no longer hold
                    moved.append((column, value // HOUR))
        for name, stored in self._columns.items():
            stored[at] = new[name]
        for (kind, key), members in leave.items():
            self._bitmap(kind, key).difference_update(BitMap(members))
        for (kind, key), members in join.items():
            self._bitmap(kind, key).update(members)
        for kind, key in {*leave, *join}:
            if kind in DATES:
                self._restat(kind, key)
        for key in moved:
            self._forget_sorted(key)

    def _bitmap(self, kind: str, key) -> BitMap:
        if kind in DATES:
            return self._bucket(kind, key)
        return self._sets[kind][key]

    def _bucket(self, column: str, hour: int) -> BitMap:
        bucket = self.buckets[column].get(hour)
        if bucket is None:  # a new hour; buckets stay once made, even when emptied
            bucket = self.buckets[column][hour] = BitMap()
            at = bisect.bisect_left(self.hours[column], hour)
            self.hours[column].insert(at, hour)
            self._hour_maps[column].insert(at, bucket)
            self._hour_stats[column] = np.insert(self._hour_stats[column], at, EMPTY, axis=0)
        return bucket

    def _restat(self, column: str, hour: int) -> None:
        """Brings an hour's stats in line with its bucket, after the bucket changed."""
        at = bisect.bisect_left(self.hours[column], hour)
        self._hour_stats[column][at] = _stats(self._hour_maps[column][at])
        self._forget_sorted((column, hour))

    def _unlink_many(self, uids: list[int]) -> None:
        """Removes tasks the index holds, by the values their columns hold now."""
        if not uids:
            return
        self.all.difference_update(BitMap(uids))
        at = np.array(uids, dtype=np.int64) - self._base
        groups: dict[tuple, list[int]] = defaultdict(list)
        old = {name: column[at].tolist() for name, column in self._columns.items()}
        for i, uid in enumerate(uids):
            status, type_ = STATUS_OF[old["status"][i]], TYPE_OF[old["type"][i]]
            groups["status", status].append(uid)
            groups["type", type_].append(uid)
            if old["index"][i] != NONE:
                name = self._index_names[old["index"][i]]
                groups["index", name].append(uid)
                groups["index_status", (name, status)].append(uid)
                groups["index_status_type", (name, status, type_)].append(uid)
            if old["canceled_by"][i] != NONE:
                groups["canceled_by", old["canceled_by"][i]].append(uid)
            for column in DATES:
                if old[column][i] != NONE:
                    groups[column, old[column][i] // HOUR].append(uid)
        for (kind, key), members in groups.items():
            self._bitmap(kind, key).difference_update(BitMap(members))
            if kind in DATES:
                self._restat(kind, key)

    # -- answering --------------------------------------------------------

    def enqueued_at(self, uid: int) -> int:
        return int(self._columns["enqueued_at"][uid - self._base])

    def index_uids_of(self, uids: BitMap) -> set[str]:
        """The index uids the tasks `uids` belong to (tasks of no index add none)."""
        if not uids:
            return set()
        ids = np.unique(self._columns["index"][uids_of(uids) - self._base])
        return {self._index_names[i] for i in ids.tolist() if i != NONE}

    def select(self, query: TaskQuery) -> BitMap:
        """The uids matching `query` (the same rules as the store's WHERE clause).

        The answer may be one of the index's own bitmaps: callers read it and never change it.
        """
        parts: list[BitMap] = []
        # Filters by uid are sets of numbers, not of stored tasks: only `all` knows which exist.
        if query.uids is not None:
            parts += [BitMap(query.uids), self.all]
        if query.below_uid is not None:
            parts += [BitMap(range(0, max(query.below_uid, 0))), self.all]
        both = query.index_uids is not None and query.statuses is not None
        three = both and query.types is not None
        # `both` and `three`, spelt out so that mypy narrows the sets to non-None.
        if query.index_uids is not None and query.statuses is not None:
            if query.types is not None:
                triples = self.index_status_types
                keys = itertools.product(query.index_uids, query.statuses, query.types)
                parts.append(_union([triples[key] for key in keys if key in triples]))
            else:
                pairs = self.index_statuses
                parts.append(
                    _union([pairs[i, st] for i in query.index_uids for st in query.statuses if (i, st) in pairs])
                )
        filters: tuple[tuple[frozenset[Any] | None, dict[Any, BitMap]], ...] = (
            (None if both else query.statuses, self.statuses),
            (None if three else query.types, self.types),
            (None if both else query.index_uids, self.indexes),
            (query.canceled_by, self.cancelers),
        )
        for values, maps in filters:
            if values is not None:
                parts.append(_union([maps[v] for v in values if v in maps]))
        if query.scope is not None:
            parts.append(_union([m for name, m in self.indexes.items() if query.scope.allows(name)]))
        for column in DATES:
            low, high = getattr(query, "after_" + column), getattr(query, "before_" + column)
            if low is not None or high is not None:
                parts.append(self._between(column, low, high))
        if not parts:
            return self.all
        if len(parts) == 1:
            return parts[0]
        parts.sort(key=len)  # intersect the smallest first
        result = parts[0] & parts[1]  # a new bitmap: the index's own are never changed here
        for part in parts[2:]:
            if not result:
                break
            result &= part
        return result

    def _between(self, column: str, low: int | None, high: int | None) -> BitMap:
        """Uids whose `column` is strictly between `low` and `high` (None: unbounded)."""
        return _union(self._hour_parts(column, low, high))

    def _hour_span(self, column: str, low: int | None, high: int | None) -> tuple[int, int, list[int]]:
        """The hours strictly between `low` and `high`: whole ones as positions [first, last) in
        `hours`, and the edge hours, which hold a bound and need a look at the times."""
        hours = self.hours[column]
        first = 0 if low is None else bisect.bisect_left(hours, low // HOUR)
        last = len(hours) if high is None else bisect.bisect_right(hours, high // HOUR)
        if first >= last:
            return first, first, []
        edges = []
        if low is not None and hours[first] == low // HOUR:
            edges.append(hours[first])
            first += 1
        if high is not None and last > first and hours[last - 1] == high // HOUR:
            edges.append(hours[last - 1])
            last -= 1
        return first, last, edges

    def _hour_parts(self, column: str, low: int | None, high: int | None) -> list[BitMap]:
        """Disjoint bitmaps whose union is `_between`: the whole hours' own buckets, then the edges refined."""
        first, last, edges = self._hour_span(column, low, high)
        return self._hour_maps[column][first:last] + [self._refine(column, hour, low, high) for hour in edges]

    def _refine(self, column: str, hour: int, low: int | None, high: int | None) -> BitMap:
        """The uids of an edge hour's bucket whose time is strictly between `low` and `high`."""
        part, _ = self._edge(column, hour, low, high)
        return part if isinstance(part, BitMap) else part()

    def _edge(
        self, column: str, hour: int, low: int | None, high: int | None
    ) -> tuple[BitMap | Callable[[], BitMap], tuple[int, int, int]]:
        """`_refine`'s uids and their stats; for an hour whose times are sorted, a function making
        the bitmap instead, with the exact count and the bucket's bounds: a page seldom reads an
        edge hour (the oldest one, for `after` and the newest first), and making it costs more
        than the binary search once other work has swept the CPU caches (bench/README.md)."""
        bucket = self.buckets[column][hour]
        if not bucket:  # an hour whose tasks were all deleted keeps its (empty) bucket
            return BitMap(), EMPTY
        edge = self._sorted_times(column, hour, bucket)
        if edge is not None:
            start, end = _sorted_span(edge, low, high)
            if start >= end:
                return BitMap(), EMPTY
            return functools.partial(_cut_sorted, edge, bucket, start, end), (end - start, bucket.min(), bucket.max())
        part = self._refine_direct(column, hour, bucket, low, high)
        return part, _stats(part)

    def _refine_direct(self, column: str, hour: int, bucket: BitMap, low: int | None, high: int | None) -> BitMap:
        """`_refine` from the per-uid column, for an hour whose times are not kept sorted."""
        first, last = bucket.min(), bucket.max()
        dense = last - first < 4 * len(bucket)
        if dense:
            # Dense, as an hour's uids mostly are (they rise with time): compare the column's slice
            # itself, a view, instead of gathering each uid's time. The intersection with the bucket drops deleted
            # tasks, whose columns keep their last values.
            values = self._columns[column][first - self._base : last + 1 - self._base]
        else:
            uids = uids_of(bucket)
            values = self._columns[column][uids - self._base]
        # The kept times, [lo, hi): within the hour, so that the uids of other hours in the
        # slice fall out here already, and one comparison a side.
        start, end = hour * HOUR, (hour + 1) * HOUR
        lo = start if low is None else max(start, low + 1)
        hi = end if high is None else min(end, high)
        kept = (values >= lo) & (values < hi)
        if not dense:
            return bitmap(uids[kept])
        count = int(np.count_nonzero(kept))
        if not count:
            return BitMap()
        head = int(kept.argmax())
        if kept[head : head + count].all():  # one run of uids: a range, no array
            run = BitMap()
            run.add_range(first + head, first + head + count)
            return run & bucket
        if 2 * count <= len(kept):
            return bitmap(np.flatnonzero(kept) + first) & bucket
        # Most of the slice is kept: take the rest away instead. Uids of other hours in the
        # slice are not in the bucket, so taking them away too changes nothing.
        return bucket - bitmap(np.flatnonzero(~kept) + first)

    def _sorted_times(self, column: str, hour: int, bucket: BitMap) -> tuple[np.ndarray, np.ndarray] | None:
        """An edge hour's times sorted and its uids in that order, if it was asked before with no change since.

        Lists (on the loop) and matching (on the store thread) both refine edge hours, so the
        cache has a lock of its own: the index's lock is not held by the store thread's reads.
        """
        key = (column, hour)
        with self._edges_lock:
            if key not in self._sorted_edges:
                if self.SORTED_EDGES:  # asked once: sorted if asked again before the hour changes
                    if len(self._sorted_edges) >= self.SORTED_EDGES:  # full: the hour first asked longest ago goes
                        del self._sorted_edges[next(iter(self._sorted_edges))]
                    self._sorted_edges[key] = None
                return None
            edge = self._sorted_edges[key]
            if edge is None:
                uids = uids_of(bucket)
                times = self._columns[column][uids - self._base]
                order = np.argsort(times, kind="stable")
                edge = self._sorted_edges[key] = times[order], uids[order]
            return edge

    def _forget_sorted(self, key: tuple[str, int]) -> None:
        with self._edges_lock:
            self._sorted_edges.pop(key, None)

    def page(self, query: TaskQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        """Up to `limit + 1` matching uids from `from_uid` (inclusive) in list order, and the total."""
        lone = _lone_date(query)
        if lone is not None:
            # A date bound alone, as dashboards ask: its hours are disjoint, so the total is the sum
            # of their sizes and the page comes from the few hours holding its uids, never a union
            # whose cost grows with the tasks in range (a busy queue's week of tasks).
            column, low, high = lone
            first, last, hours = self._hour_span(column, low, high)
            edges = [self._edge(column, hour, low, high) for hour in hours]
            stats = self._hour_stats[column][first:last]
            if edges:
                stats = np.vstack((stats, [row for _, row in edges]))
            return _page_of_disjoint(
                self._hour_maps[column][first:last] + [part for part, _ in edges],
                stats,
                limit=limit,
                from_uid=from_uid,
                reverse=reverse,
            )
        matched = self.select(query)
        total = len(matched)
        if reverse:
            start = 0 if from_uid is None else (matched.rank(from_uid - 1) if from_uid > 0 else 0)
            return list(matched[start : start + limit + 1]), total
        end = total if from_uid is None else matched.rank(from_uid)
        return list(matched[max(0, end - limit - 1) : end])[::-1], total
