"""GET /activity's work in the index: tasks finished per second over 15 minutes, and counts per index.

    .venv/bin/python bench/activity.py                                   # 100,000 tasks, quick
    .venv/bin/python bench/activity.py --tasks 1000000 --recent 900000   # 1M, 1,000 a second for 15 min

One in-memory index of synthetic tasks (no SQLite): `--recent` of them finished within the last
15 minutes (spread evenly, a quarter failed or canceled), the rest days before, over 30 indexes.
Timed, each alone and over many runs: `finished_per_second` for 900 seconds (what the dashboard's
chart loads; the copy out of the index and the count), `counts_by_index`, and as the baseline the
same history from the totals the task list already answers, one per second and status (2,700
`TaskIndex.select` counts under `statuses` and finished-at bounds), checked equal first.
"""

from __future__ import annotations

import argparse
import time

import harness
from taskhub.server.index import activity
from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import TaskQuery, TaskStatus as S, TaskType as T

SECOND = 1_000_000
WINDOW = 900
CHUNK = 100_000
INDEXES = 30
# Of every 8 recent tasks: 6 succeeded, 1 failed, 1 canceled.
RECENT_STATUSES = (S.SUCCEEDED,) * 6 + (S.FAILED, S.CANCELED)


def build(tasks: int, recent: int, now: int, since: int) -> TaskIndex:
    index = TaskIndex()
    old = tasks - recent
    for start in range(0, tasks, CHUNK):
        rows = []
        for uid in range(start, min(tasks, start + CHUNK)):
            if uid < old:  # finished days ago
                finished = now - 3 * 86_400 * SECOND + uid * 1_000
                status = S.SUCCEEDED
            else:  # within the window, evenly
                finished = since + (uid - old) * ((now - since) // max(recent, 1))
                status = RECENT_STATUSES[uid % len(RECENT_STATUSES)]
            rows.append(
                (
                    uid,
                    int(status),
                    int(T.DOCUMENT_ADDITION_OR_UPDATE),
                    -1,
                    finished - 2_000,
                    finished - 1_000,
                    finished,
                    f"index-{uid % INDEXES:02d}",
                )
            )
        index.load(rows)
    return index


def timed(call, seconds: float, min_runs: int) -> harness.Latency:
    samples: list[float] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop or len(samples) < min_runs:
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return harness.Latency(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--recent", type=int, default=45_000, help="tasks finished in the last 15 minutes")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long each call is timed")
    parser.add_argument("--min-runs", type=int, default=10)
    args = parser.parse_args()
    recent = min(args.recent, args.tasks)
    now = time.time_ns() // 1_000
    since = (now // SECOND + 1 - WINDOW) * SECOND  # as `rules.operations.activity` asks
    t0 = time.perf_counter()
    index = build(args.tasks, recent, now, since)
    harness.figure("index built", f"{args.tasks:,} tasks, {recent:,} in the window, {time.perf_counter() - t0:.1f} s")

    def per_second() -> dict:
        return activity.finished_per_second(*activity.finished_rows(index, since, WINDOW), since, WINDOW)

    def by_counts() -> dict:  # the same history from the list totals a page could ask, one a second and status
        return {
            status: [
                len(
                    index.select(
                        TaskQuery(statuses=frozenset({status}), after_finished_at=t - 1, before_finished_at=t + SECOND)
                    )
                )
                for t in range(since, since + WINDOW * SECOND, SECOND)
            ]
            for status in activity.FINISHED
        }

    counts = per_second()
    assert sum(sum(c) for c in counts.values()) == recent, "the bench's tasks are not where it put them"
    assert {s: c for s, c in by_counts().items() if any(c)} == counts
    fast = timed(per_second, args.seconds, args.min_runs)
    per_index = timed(lambda: activity.counts_by_index(index), args.seconds, args.min_runs)
    slow = timed(by_counts, args.seconds, 3)
    harness.figure("finished_per_second (900 s)", str(fast))
    harness.figure("counts_by_index", str(per_index))
    harness.figure("baseline: 2,700 list totals", str(slow))
    cost = fast.p50 + per_index.p50
    harness.target_line(
        f"GET /activity's index work, {recent:,} tasks in 15 min", f"{cost:.2f} ms p50", "<= 20 ms", cost <= 20
    )
    harness.ratio_line("activity / the same from list totals (p50)", cost / slow.p50, "< 1", cost < slow.p50)


if __name__ == "__main__":
    main()
