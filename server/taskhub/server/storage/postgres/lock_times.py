"""How long units of work wait for `UNIT_LOCK` and hold it, counted in the process (always on).

Every unit of work on the database takes the lock and holds it through its commit, so the
time it is held bounds how many units per second all the servers on one database can run
together. The counters cost two clock reads and a few additions a unit; bench/ reads them
(`UNIT_LOCK_TIMES.snapshot()`) to print the wait and hold times and to project capacity.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# Log2 buckets of microseconds: bucket i counts durations below 2**i us (the last, everything longer).
BUCKETS = 32


def _bucket(ns: int) -> int:
    return min((ns // 1_000).bit_length(), BUCKETS - 1)


@dataclass
class LockTimes:
    """Totals, maxima and log2 histograms of the wait for the lock and of its hold (lock taken -> commit done).

    The wait includes the round trip that opens the unit (BEGIN, the lock, the counters, in one). `commit_ns` is
    the part of the hold spent in the unit's end (the counters written back, NOTIFY and COMMIT, in one round
    trip): the flush of the unit's WAL, mostly.
    """

    units: int = 0
    wait_ns: int = 0
    hold_ns: int = 0
    commit_ns: int = 0
    max_wait_ns: int = 0
    max_hold_ns: int = 0
    wait_buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    hold_buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, wait_ns: int, hold_ns: int, commit_ns: int = 0) -> None:
        """One committed unit: `wait_ns` from asking for the lock to having it, `hold_ns` from then to the commit
        done, `commit_ns` of it in the COMMIT."""
        with self._lock:
            self.units += 1
            self.wait_ns += wait_ns
            self.hold_ns += hold_ns
            self.commit_ns += commit_ns
            self.max_wait_ns = max(self.max_wait_ns, wait_ns)
            self.max_hold_ns = max(self.max_hold_ns, hold_ns)
            self.wait_buckets[_bucket(wait_ns)] += 1
            self.hold_buckets[_bucket(hold_ns)] += 1

    def snapshot(self) -> dict[str, object]:
        """The counters as plain values (JSON-ready)."""
        with self._lock:
            return {
                "units": self.units,
                "wait_ns": self.wait_ns,
                "hold_ns": self.hold_ns,
                "commit_ns": self.commit_ns,
                "max_wait_ns": self.max_wait_ns,
                "max_hold_ns": self.max_hold_ns,
                "wait_buckets": list(self.wait_buckets),
                "hold_buckets": list(self.hold_buckets),
            }


# The process's counters: every PostgresStorage adds its committed units here.
UNIT_LOCK_TIMES = LockTimes()
