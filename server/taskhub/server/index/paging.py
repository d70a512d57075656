"""Paging a date bound alone: a page and its total from disjoint bitmaps (an hour each), never their union.

A lone date bound is what dashboards ask. Its hours are disjoint, so the total is the
sum of their sizes and the page comes from the few hours holding its uids, by each
hour's size and smallest and largest uid, kept in one array (`SIZE`, `LOW`, `HIGH`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pyroaring import BitMap

from taskhub.server.index.columns import DATES
from taskhub.server.model import TaskQuery

SIZE, LOW, HIGH = 0, 1, 2  # the columns of an hour's stats: its bucket's size, smallest and largest uid
EMPTY = (0, 2**62, -1)  # an empty bucket's stats: it sorts last whichever end a page starts from


def lone_date(query: TaskQuery) -> tuple[str, int | None, int | None] | None:
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


def page_of_disjoint(
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
