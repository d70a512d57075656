"""Per-hour buckets of uids for each date column, and the date bounds they answer.

A bound takes the buckets of the hours it covers whole, and the two edge hours, which
hold a bound, refined by the exact times in the per-uid columns; an edge hour asked
again has its times sorted, for binary search. A bound alone is paged from its hours
without their union (`paging`).
"""

from __future__ import annotations

import bisect
import functools
import threading
from collections.abc import Callable

import numpy as np
from pyroaring import BitMap

from taskhub.server.index.bitmaps import bitmap, uids_of, union
from taskhub.server.index.columns import DATES, Columns
from taskhub.server.index.paging import EMPTY, page_of_disjoint

HOUR = 3_600_000_000  # microseconds


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


class DateBuckets:
    """Which uids have a date in which hour, per date column; the times themselves are in `columns`."""

    SORTED_EDGES = 64  # edge hours kept sorted at most (each one's memory grows with the queue)

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self.buckets: dict[str, dict[int, BitMap]] = {column: {} for column in DATES}
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

    # -- keeping in step --------------------------------------------------

    def add(self, column: str, uids: np.ndarray, times: np.ndarray) -> None:
        """Puts `uids` in the buckets of the hours of their `times` (uids ascending, as loaded)."""
        hours = times // HOUR
        for hour in np.unique(hours).tolist():
            self.bucket(column, hour).update(bitmap(uids[hours == hour]))
            self.restat(column, hour)

    def bucket(self, column: str, hour: int) -> BitMap:
        bucket = self.buckets[column].get(hour)
        if bucket is None:  # a new hour; buckets stay once made, even when emptied
            bucket = self.buckets[column][hour] = BitMap()
            at = bisect.bisect_left(self.hours[column], hour)
            self.hours[column].insert(at, hour)
            self._hour_maps[column].insert(at, bucket)
            self._hour_stats[column] = np.insert(self._hour_stats[column], at, EMPTY, axis=0)
        return bucket

    def restat(self, column: str, hour: int) -> None:
        """Brings an hour's stats in line with its bucket, after the bucket changed."""
        at = bisect.bisect_left(self.hours[column], hour)
        self._hour_stats[column][at] = _stats(self._hour_maps[column][at])
        self.forget_sorted((column, hour))

    def forget_sorted(self, key: tuple[str, int]) -> None:
        with self._edges_lock:
            self._sorted_edges.pop(key, None)

    def rebuild(self) -> None:
        """Makes the hours' order and stats again from `buckets`, after they were filled directly (a snapshot)."""
        for date, table in self.buckets.items():
            hours = self.hours[date] = sorted(table)
            maps = self._hour_maps[date] = [table[hour] for hour in hours]
            self._hour_stats[date] = np.array([_stats(bits) for bits in maps], dtype=np.int64).reshape(-1, 3)

    # -- answering --------------------------------------------------------

    def between(self, column: str, low: int | None, high: int | None) -> BitMap:
        """Uids whose `column` is strictly between `low` and `high` (None: unbounded)."""
        return union(self._hour_parts(column, low, high))

    def page(
        self, column: str, low: int | None, high: int | None, *, limit: int, from_uid: int | None, reverse: bool
    ) -> tuple[list[int], int]:
        """`TaskIndex.page` for a query bounding `column` alone, from its hours' stats and buckets."""
        first, last, hours = self._hour_span(column, low, high)
        edges = [self._edge(column, hour, low, high) for hour in hours]
        stats = self._hour_stats[column][first:last]
        if edges:
            stats = np.vstack((stats, [row for _, row in edges]))
        return page_of_disjoint(
            self._hour_maps[column][first:last] + [part for part, _ in edges],
            stats,
            limit=limit,
            from_uid=from_uid,
            reverse=reverse,
        )

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
        """Disjoint bitmaps whose union is `between`: the whole hours' own buckets, then the edges refined."""
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
        times, base = self.columns.arrays[column], self.columns.base
        first, last = bucket.min(), bucket.max()
        dense = last - first < 4 * len(bucket)
        if dense:
            # Dense, as an hour's uids mostly are (they rise with time): compare the column's slice
            # itself, a view, instead of gathering each uid's time. The intersection with the bucket drops deleted
            # tasks, whose columns keep their last values.
            values = times[first - base : last + 1 - base]
        else:
            uids = uids_of(bucket)
            values = times[uids - base]
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
                times = self.columns.arrays[column][uids - self.columns.base]
                order = np.argsort(times, kind="stable")
                edge = self._sorted_edges[key] = times[order], uids[order]
            return edge
