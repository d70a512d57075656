"""An in-memory index of every task's filterable fields: a list and its total in milliseconds.

Roaring bitmaps of uids per status, type, index and canceling task answer the set
filters, with bitmaps of their own for (index, status) and (index, status, type) taken
together; per-hour buckets of uids per date column (`dates`) answer the date bounds.
`total` is the size of the answer, and the page is a slice of it by rank (for a date bound
alone, from its hours without their union: `paging`). Each task's values are kept in per-uid
`columns`, so that a change leaves the bitmaps of the values it replaces. The writing `Store`
builds it from its rows and feeds it every committed change in commit order, on the store
thread; leasing and matching read it there, lists read it on the event loop under the
store's `index_lock`. It holds no SQL and sees only domain tasks.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from pyroaring import BitMap

from taskhub.server.index.bitmaps import bitmap, union
from taskhub.server.index.columns import DATES, NONE, Columns
from taskhub.server.index.dates import HOUR, DateBuckets
from taskhub.server.index.paging import lone_date
from taskhub.server.index.state import IndexState, deserialized, serialized
from taskhub.server.model import STATUS_OF, TYPE_OF, Task, TaskKind, TaskQuery, TaskStatus

PAIR = 8  # (index id, status) packed as index_id * PAIR + status; statuses are 1 to 5
TRIPLE = 128  # (index id, status, type) packed as pair * TRIPLE + type; types are 1 to 127 (registered ones from 32)


def type_key(code: int) -> TaskKind | int:
    """A stored type code as the maps key it: Meilisearch's type, or a registered type's code (an int
    equal to its `CustomType`, which the index never needs by name)."""
    return TYPE_OF.get(code, code)


class TaskIndex:
    """Which uids have which status, type, index, canceler and dates."""

    def __init__(self) -> None:
        self.all = BitMap()
        self.statuses: dict[TaskStatus, BitMap] = defaultdict(BitMap)
        self.types: dict[TaskKind | int, BitMap] = defaultdict(BitMap)
        self.indexes: dict[str, BitMap] = defaultdict(BitMap)
        self.cancelers: dict[int, BitMap] = defaultdict(BitMap)
        # Index and status together, the commonest pair of filters: one lookup instead of an
        # intersection whose cost grows with the queue (bench/README.md, Defaults chosen by measurement).
        self.index_statuses: dict[tuple[str, TaskStatus], BitMap] = defaultdict(BitMap)
        # And with the type, for the three together: their intersection's cost grows with the pair's
        # bitmap (a busy index's failures, say), a lookup's does not.
        self.index_status_types: dict[tuple[str, TaskStatus, TaskKind | int], BitMap] = defaultdict(BitMap)
        # Every set's bitmaps by kind, keyed as the kind says (`state.typed_key`).
        self._sets: dict[str, dict[Any, BitMap]] = {
            "status": self.statuses,
            "type": self.types,
            "index": self.indexes,
            "canceled_by": self.cancelers,
            "index_status": self.index_statuses,
            "index_status_type": self.index_status_types,
        }
        self.columns = Columns()
        self.dates = DateBuckets(self.columns)

    @property
    def buckets(self) -> dict[str, dict[int, BitMap]]:
        """Each date column's uids by hour."""
        return self.dates.buckets

    @property
    def hours(self) -> dict[str, list[int]]:
        """Each date column's hours with a bucket, sorted."""
        return self.dates.hours

    # -- snapshots --------------------------------------------------------

    def spare_columns(self, room: int = 1 << 16) -> dict[str, np.ndarray]:
        """Columns for `to_state` to copy into, sized for the tasks stored now and `room` more (`Columns.spare`)."""
        return self.columns.spare(self.all, room)

    def to_state(self, spare: dict[str, np.ndarray] | None = None) -> IndexState:
        """A copy of the index's contents, to save or to make another index of.

        Fast enough to take while writers wait (the store's `index_lock`, or on the store
        thread): bitmaps are serialized, columns sliced to the stored uids and copied (into
        `spare_columns` if given and big enough). Writing the copy out (`snapshot.save`)
        needs no lock.
        """
        maps = serialized(self.all, {**self._sets, **self.dates.buckets})
        base, used, capacity, columns = self.columns.copy(self.all, spare)
        names = list(self.columns.names)
        return IndexState(base=base, used=used, capacity=capacity, names=names, maps=maps, columns=columns)

    @classmethod
    def from_state(cls, state: IndexState) -> TaskIndex:
        """An index holding `state`'s contents; it takes the state's columns as its own
        (`Columns.restore`). A state that does not fit together raises ValueError."""
        index = cls()
        index.columns.restore(state)
        index.all = deserialized(state.maps, {**index._sets, **index.dates.buckets})
        index.dates.rebuild()
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
        self.columns.grow(int(uids.max()) + 1, self.all)
        columns, at = self.columns.arrays, uids - self.columns.base
        sets: tuple[tuple[int, str, dict[Any, BitMap], Callable[[int], object]], ...] = (
            (1, "status", self.statuses, TaskStatus),
            (2, "type", self.types, type_key),
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
        index_id_of, names = self.columns.index_id, self.columns.names
        index_ids = np.array([index_id_of(row[7]) for row in rows], dtype=np.int32)
        columns["index"][at] = index_ids
        for index_id in np.unique(index_ids[index_ids != NONE]):
            self.indexes[names[index_id]] |= bitmap(uids[index_ids == index_id])
        # (index, status) pairs and (index, status, type) triples: grouped by one stable sort
        # each, so uids stay ascending in each group.
        indexed = index_ids != NONE
        pairs = index_ids[indexed].astype(np.int64) * PAIR + numbers[indexed, 1]
        groupings: tuple[tuple[np.ndarray, dict[Any, BitMap], Callable[[int], tuple[object, ...]]], ...] = (
            (pairs, self.index_statuses, lambda key: (names[key // PAIR], STATUS_OF[key % PAIR])),
            (
                pairs * TRIPLE + numbers[indexed, 2],
                self.index_status_types,
                lambda key: (names[key // TRIPLE // PAIR], STATUS_OF[key // TRIPLE % PAIR], type_key(key % TRIPLE)),
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
            self.dates.add(column, uids[dated], values[dated])

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
        self.columns.grow(max(uids) + 1, self.all)
        arrays = self.columns.arrays
        at = np.array(uids, dtype=np.int64) - self.columns.base
        # A task the index does not hold has no old values (a deleted task's columns keep its last ones).
        old = {name: np.where(held, column[at], NONE).tolist() for name, column in arrays.items()}
        new: dict[str, list[int]] = {name: [] for name in arrays}
        leave: dict[tuple, list[int]] = defaultdict(list)
        join: dict[tuple, list[int]] = defaultdict(list)
        moved: list[tuple[str, int]] = []
        names, index_id_of = self.columns.names, self.columns.index_id
        for i, task in enumerate(tasks):
            uid, status, type_ = task.uid, int(task.status), int(task.type)
            index_id = index_id_of(task.index_uid)
            canceled_by = NONE if task.canceled_by is None else task.canceled_by
            was_status, was_index, was_type = old["status"][i], old["index"][i], old["type"][i]
            if status != was_status:
                if was_status != NONE:
                    leave["status", STATUS_OF[was_status]].append(uid)
                join["status", task.status].append(uid)
            if type_ != was_type:
                if was_type != NONE:
                    leave["type", type_key(was_type)].append(uid)
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
                    old_key = (names[was_index], STATUS_OF[was_status], type_key(was_type))
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
        for name, stored in arrays.items():
            stored[at] = new[name]
        for (kind, key), members in leave.items():
            self._bitmap(kind, key).difference_update(BitMap(members))
        for (kind, key), members in join.items():
            self._bitmap(kind, key).update(members)
        for kind, key in {*leave, *join}:
            if kind in DATES:
                self.dates.restat(kind, key)
        for key in moved:
            self.dates.forget_sorted(key)

    def _bitmap(self, kind: str, key) -> BitMap:
        if kind in DATES:
            return self.dates.bucket(kind, key)
        return self._sets[kind][key]

    def _unlink_many(self, uids: list[int]) -> None:
        """Removes tasks the index holds, by the values their columns hold now."""
        if not uids:
            return
        self.all.difference_update(BitMap(uids))
        at = np.array(uids, dtype=np.int64) - self.columns.base
        groups: dict[tuple, list[int]] = defaultdict(list)
        old = {name: column[at].tolist() for name, column in self.columns.arrays.items()}
        names = self.columns.names
        for i, uid in enumerate(uids):
            status, type_ = STATUS_OF[old["status"][i]], type_key(old["type"][i])
            groups["status", status].append(uid)
            groups["type", type_].append(uid)
            if old["index"][i] != NONE:
                name = names[old["index"][i]]
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
                self.dates.restat(kind, key)

    # -- answering --------------------------------------------------------

    def enqueued_at(self, uid: int) -> int:
        return int(self.columns.arrays["enqueued_at"][uid - self.columns.base])

    def index_uids_of(self, uids: BitMap) -> set[str]:
        """The index uids the tasks `uids` belong to (tasks of no index add none)."""
        return self.columns.index_uids_of(uids)

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
                parts.append(union([triples[key] for key in keys if key in triples]))
            else:
                pairs = self.index_statuses
                parts.append(
                    union([pairs[i, st] for i in query.index_uids for st in query.statuses if (i, st) in pairs])
                )
        filters: tuple[tuple[frozenset[Any] | None, dict[Any, BitMap]], ...] = (
            (None if both else query.statuses, self.statuses),
            (None if three else query.types, self.types),
            (None if both else query.index_uids, self.indexes),
            (query.canceled_by, self.cancelers),
        )
        for values, maps in filters:
            if values is not None:
                parts.append(union([maps[v] for v in values if v in maps]))
        if query.scope is not None:
            parts.append(union([m for name, m in self.indexes.items() if query.scope.allows(name)]))
        for column in DATES:
            low, high = getattr(query, "after_" + column), getattr(query, "before_" + column)
            if low is not None or high is not None:
                parts.append(self.dates.between(column, low, high))
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

    def page(self, query: TaskQuery, *, limit: int, from_uid: int | None, reverse: bool) -> tuple[list[int], int]:
        """Up to `limit + 1` matching uids from `from_uid` (inclusive) in list order, and the total."""
        lone = lone_date(query)
        if lone is not None:
            # A date bound alone, as dashboards ask: its hours are disjoint, so the total is the sum
            # of their sizes and the page comes from the few hours holding its uids, never a union
            # whose cost grows with the tasks in range (a busy queue's week of tasks).
            column, low, high = lone
            return self.dates.page(column, low, high, limit=limit, from_uid=from_uid, reverse=reverse)
        matched = self.select(query)
        total = len(matched)
        if reverse:
            start = 0 if from_uid is None else (matched.rank(from_uid - 1) if from_uid > 0 else 0)
            return list(matched[start : start + limit + 1]), total
        end = total if from_uid is None else matched.rank(from_uid)
        return list(matched[max(0, end - limit - 1) : end])[::-1], total
