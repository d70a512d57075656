"""ListTasks with `total`, server side, against the same filter's SELECT ... LIMIT + COUNT(*) in raw SQLite.

    .venv/bin/python bench/list_tasks.py                                   # 100,000 tasks, quick
    .venv/bin/python bench/list_tasks.py --tasks 1000000 --db-dir /tmp/taskhub-bench
    .venv/bin/python bench/list_tasks.py --tasks 1000000,10000000 --db-dir /tmp/taskhub-bench  # + the scaling row

What is timed, per filter, alternating the two sides call by call on the same file:
- taskhub: `await Scheduler.list_tasks(query, limit=20)` in-process: the store-thread hop,
  the page query and the `total` count, rows turned into `Task`s. No gRPC and no protobuf
  (those are GetTask's bench); the servicer adds `convert.page_to_proto` on top.
- raw: the same filter by hand on a copy of the database that has an SQL index for every
  filtered column (`RAW_INDEXES`; taskhub's own schema no longer has them):
  `SELECT <columns> ... ORDER BY uid DESC LIMIT 21` then `SELECT COUNT(*) ...`, rows left as tuples.
Targets: taskhub p99 <= 5 ms, and raw p99 / taskhub p99 >= 10. Given two sizes, also
p99(larger) <= 1.5 x p99(smaller) per filter. That one compares taskhub with itself, so it
uses a third phase: taskhub's calls back to back, with no raw query between them. In the
alternating phase each raw call (up to 0.6 s at 10M) sweeps the CPU caches before the next
taskhub call, more the larger the database, which is the baseline's cost, not taskhub's.

Databases come from `load_tasks.py` (`tasks-N.db` in `--db-dir`, reused when present).
Both sides run on a warm page cache (two unmeasured calls each first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import harness
import load_tasks
from taskhub.server.index.memory import MemoryFinder
from taskhub.server.model import TaskQuery, TaskStatus as S, TaskType as T
from taskhub.server.rules.scheduler import Scheduler
from taskhub.server.storage.rows import COLUMNS
from taskhub.server.storage.sqlite.database import SqliteStorage as Store

DAY = 86_400 * 1_000_000


@dataclass
class Filter:
    name: str
    query: TaskQuery
    sql: str
    params: tuple = ()


def filters(conn: sqlite3.Connection) -> list[Filter]:
    """Each filter alone, then three combined; bounds and values taken from the data."""
    first, last, count = conn.execute("SELECT MIN(enqueued_at), MAX(enqueued_at), COUNT(*) FROM tasks").fetchone()
    canceler = conn.execute("SELECT MAX(canceled_by) FROM tasks").fetchone()
    canceler = canceler[0] or 0
    uids = sorted(random.Random(1).sample(range(count), min(100, count)))
    week = min(7 * DAY, (last - first) // 4)
    recent, early = last - week, first + week
    out = [
        Filter("(no filter)", TaskQuery(), "1"),
        Filter("uids (100 of them)", TaskQuery(uids=frozenset(uids)), f"uid IN ({','.join(map(str, uids))})"),
        Filter(
            "indexUids=index-00 (busiest)",
            TaskQuery(index_uids=frozenset({"index-00"})),
            "index_uid = ?",
            ("index-00",),
        ),
        Filter("statuses=failed", TaskQuery(statuses=frozenset({S.FAILED})), f"status = {int(S.FAILED)}"),
        Filter(
            "statuses=enqueued,processing",
            TaskQuery(statuses=frozenset({S.ENQUEUED, S.PROCESSING})),
            f"status IN ({int(S.ENQUEUED)}, {int(S.PROCESSING)})",
        ),
        Filter(
            "types=documentDeletion",
            TaskQuery(types=frozenset({T.DOCUMENT_DELETION})),
            f"type = {int(T.DOCUMENT_DELETION)}",
        ),
        Filter(
            "canceledBy (one cancelation)", TaskQuery(canceled_by=frozenset({canceler})), "canceled_by = ?", (canceler,)
        ),
    ]
    for column in ("enqueued_at", "started_at", "finished_at"):
        out.append(
            Filter(
                f"after{column.title().replace('_', '')} (last week)",
                TaskQuery(**{f"after_{column}": recent}),
                f"{column} > ?",
                (recent,),
            )
        )
        out.append(
            Filter(
                f"before{column.title().replace('_', '')} (first week)",
                TaskQuery(**{f"before_{column}": early}),
                f"{column} < ?",
                (early,),
            )
        )
    out.append(
        Filter(
            "index-00 + failed + documentAdditionOrUpdate",
            TaskQuery(
                index_uids=frozenset({"index-00"}),
                statuses=frozenset({S.FAILED}),
                types=frozenset({T.DOCUMENT_ADDITION_OR_UPDATE}),
            ),
            f"index_uid = ? AND status = {int(S.FAILED)} AND type = {int(T.DOCUMENT_ADDITION_OR_UPDATE)}",
            ("index-00",),
        )
    )
    return out


# What a hand-written SQLite queue would index to answer these filters (taskhub's own schema
# indexed the same columns until its in-memory index made them redundant for it).
RAW_INDEXES = [
    ("status", "uid"),
    ("type", "status"),
    ("index_uid", "uid"),
    ("canceled_by",),
    ("enqueued_at",),
    ("started_at",),
    ("finished_at",),
]


def indexed_copy(store: Store) -> Path:
    """The raw side's database: a copy of the store's, with `RAW_INDEXES` (made once, kept beside it).

    Made after the scheduler started, so it holds what the server recovered (processing
    tasks back to enqueued) and both sides count the same rows.
    """
    db = Path(store.path)
    copy = db.with_name(f"{db.stem}-indexed.db")
    if not copy.exists():
        print(f"indexing a copy for the raw side: {copy} ...", flush=True)
        partial = copy.with_suffix(".partial")
        store.backup(partial)
        with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")  # one file, safe to rename once closed
            conn.execute("PRAGMA cache_size=-262144")
            for columns in RAW_INDEXES:
                conn.execute(f"CREATE INDEX IF NOT EXISTS raw_{'_'.join(columns)} ON tasks ({', '.join(columns)})")
        partial.rename(copy)
    return copy


async def measure(db: Path, args) -> dict[str, tuple[harness.Latency, harness.Latency]]:
    store = Store(db)
    scheduler = Scheduler(store, MemoryFinder(), cleanup_threshold=2**62)
    await scheduler.start(background=False)  # recovery and the in-memory index, as a server does
    raw = sqlite3.connect(indexed_copy(store))
    results = {}
    try:
        for f in filters(raw):
            select = f"SELECT {COLUMNS} FROM tasks WHERE {f.sql} ORDER BY uid DESC LIMIT {args.limit + 1}"
            count = f"SELECT COUNT(*) FROM tasks WHERE {f.sql}"

            def raw_call() -> int:
                raw.execute(select, f.params).fetchall()
                return raw.execute(count, f.params).fetchone()[0]

            ours, theirs = [], []
            for _ in range(2):  # warm the page cache for both sides
                raw_total = raw_call()
                page = await scheduler.list_tasks(f.query, limit=args.limit)
            if page.total != raw_total:
                print(f"  !! {f.name}: taskhub total {page.total} != raw COUNT(*) {raw_total}", flush=True)
            began = time.monotonic()
            while len(ours) < args.max_runs and (len(ours) < args.min_runs or time.monotonic() - began < args.seconds):
                t0 = time.perf_counter()
                raw_call()
                t1 = time.perf_counter()
                await scheduler.list_tasks(f.query, limit=args.limit)
                t2 = time.perf_counter()
                theirs.append(t1 - t0)
                ours.append(t2 - t1)
            alone, began = [], time.monotonic()
            while len(alone) < args.max_runs and (
                len(alone) < args.min_runs or time.monotonic() - began < args.seconds / 2
            ):
                t0 = time.perf_counter()
                await scheduler.list_tasks(f.query, limit=args.limit)
                alone.append(time.perf_counter() - t0)
            mine, base = harness.Latency(ours), harness.Latency(theirs)
            results[f.name] = (mine, base, harness.Latency(alone))
            speedup = base.p99 / mine.p99 if mine.p99 else float("inf")
            harness.figure(f.name, f"total {page.total:>9,}")
            harness.figure("  taskhub list_tasks", str(mine))
            harness.figure("  raw SELECT LIMIT + COUNT(*)", str(base))
            harness.figure("  taskhub alone, back to back", str(results[f.name][2]))
            harness.ratio_line(f"raw/taskhub p99 [{f.name}]", speedup, ">= 10", speedup >= 10)
            harness.target_line(f"taskhub p99 [{f.name}]", f"{mine.p99:.3f} ms", "<= 5 ms", mine.p99 <= 5)
    finally:
        await scheduler.stop()
        store.close()
        raw.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="100000", help="tasks stored; a comma list runs each size (default 100000)")
    parser.add_argument("--db-dir", help="keep and reuse the loaded databases here (default: a temporary folder)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per filter (both sides together)")
    parser.add_argument("--min-runs", type=int, default=5)
    parser.add_argument("--max-runs", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=20, help="page size (Meilisearch's default is 20)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.tasks.split(",")]

    by_size = {}
    with harness.scratch_dir(args.db_dir) as db_dir:
        for tasks in sizes:
            db = load_tasks.ensure(db_dir, tasks)
            print(f"ListTasks at {tasks:,} tasks (limit {args.limit}, total included)", flush=True)
            by_size[tasks] = asyncio.run(measure(db, args))
    harness.machine_noise()  # what sets the floor of these sub-millisecond p99s
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"scaling: taskhub p99 at {large:,} / at {small:,} tasks (calls back to back)", flush=True)
        for name, (_, _, mine) in by_size[large].items():
            base = by_size[small][name][2]
            growth = mine.p99 / base.p99 if base.p99 else float("inf")
            harness.ratio_line(f"p99 {large:,}/{small:,} [{name}]", growth, "<= 1.5", growth <= 1.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
