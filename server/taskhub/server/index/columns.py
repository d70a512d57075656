"""The index's per-uid columns: each task's status, type, index, canceler and dates, in numpy arrays.

A task's values sit at its uid's position from the columns' `base` (38 bytes a task),
NONE where it has none; index uids are held as small ids, named in `names`. The date
buckets read the dates here to cut their edge hours by the exact times.
"""

from __future__ import annotations

import numpy as np
from pyroaring import BitMap

from taskhub.server.index.bitmaps import uids_of
from taskhub.server.index.state import IndexState

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


class Columns:
    """Arrays of per-uid values by column name, from the uid `base` on, and the ids of index uids."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.base = 0  # the uid at position 0 of every column
        self.names: list[str] = []  # index uids by their id in the "index" column
        self.ids: dict[str, int] = {}
        self.grow(1024, BitMap())

    def grow(self, end: int, stored: BitMap) -> None:
        """Makes room for uids below `end`, `stored` being the uids of the tasks stored.

        The columns start at `base`, the oldest uid they may hold: uids only grow and
        the oldest tasks get deleted, so before growing, the prefix of uids no longer
        stored is dropped. Memory follows the tasks stored, not the uids ever given.
        A uid older than `base` (none comes today: uids are never given twice, and dumps
        load into an empty store) moves the start back rather than wrap around.
        """
        if stored and stored.min() < self.base:
            back = self.base - stored.min()
            for name, column in self.arrays.items():
                self.arrays[name] = np.concatenate((np.full(back, NONE, dtype=column.dtype), column))
            self.base -= back
        size = len(self.arrays.get("status", ()))
        if end - self.base <= size:
            return
        oldest = stored.min() if stored else end - 1
        if oldest > self.base:
            shift = min(oldest, self.base + size) - self.base
            for column in self.arrays.values():
                column[: size - shift] = column[shift:]
                column[size - shift :] = NONE
            self.base += shift
        needed = end - self.base
        if needed <= size:
            return
        size = max(needed, size * 2)
        for name, dtype in COLUMNS:
            grown = np.full(size, NONE, dtype=dtype)
            old = self.arrays.get(name)
            if old is not None:
                grown[: len(old)] = old
            self.arrays[name] = grown

    def index_id(self, name: str | None) -> int:
        if name is None:
            return NONE
        found = self.ids.get(name)
        if found is None:
            found = self.ids[name] = len(self.names)
            self.names.append(name)
        return found

    def index_uids_of(self, uids: BitMap) -> set[str]:
        """The index uids the tasks `uids` belong to (tasks of no index add none)."""
        if not uids:
            return set()
        ids = np.unique(self.arrays["index"][uids_of(uids) - self.base])
        return {self.names[i] for i in ids.tolist() if i != NONE}

    # -- snapshots --------------------------------------------------------

    def spare(self, stored: BitMap, room: int) -> dict[str, np.ndarray]:
        """Columns for `copy` to copy into, sized for the tasks `stored` now and `room` more.

        Made, and their memory touched, before writers are kept out: a fresh copy's page
        faults cost more than the copy itself, and with these `copy` only moves bytes.
        Needs no lock: a size read while the store thread writes is at worst too small, and
        `copy` then copies into new columns instead.
        """
        count = stored.max() + 1 - stored.min() if stored else 0
        return {name: np.full(count + room, NONE, dtype) for name, dtype in COLUMNS}  # written, so touched now

    def copy(self, stored: BitMap, spare: dict[str, np.ndarray] | None) -> tuple[int, int, int, dict[str, np.ndarray]]:
        """The columns of the tasks `stored`, copied (into `spare` if given and big enough), as
        `IndexState` holds them: (base, used, capacity, columns)."""
        low = stored.min() - self.base if stored else 0
        high = stored.max() + 1 - self.base if stored else 0
        # Positions below the oldest stored uid and above the newest are never read (a deleted
        # task's columns keep its last values): the copy starts and ends with the tasks stored,
        # and the index's room for new uids is kept as a length.
        columns = {}
        for name, column in self.arrays.items():
            target = None if spare is None else spare.get(name)
            if target is None or len(target) < high - low or target.dtype != column.dtype:
                columns[name] = column[low:high].copy()
            else:
                columns[name] = target[: high - low]
                columns[name][:] = column[low:high]
        return self.base + low, high - low, len(self.arrays["status"]) - low, columns

    def restore(self, state: IndexState) -> None:
        """Takes `state`'s columns and index uids as its own; raises ValueError if they do not fit together.

        A column already `capacity` long is used as it is (a snapshot is read into such
        columns); a shorter one is copied into one.
        """
        if not 0 <= state.used <= state.capacity or state.base < 0:
            raise ValueError(f"columns of {state.used} uids from {state.base} in room for {state.capacity}")
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
        self.arrays, self.base = columns, state.base
        self.names = list(state.names)
        self.ids = {name: i for i, name in enumerate(self.names)}
        if len(self.ids) != len(self.names):
            raise ValueError("an index uid is named twice")
