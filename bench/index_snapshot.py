"""The task index saved to a snapshot and loaded back, against building it from the rows.

    .venv/bin/python bench/index_snapshot.py                        # 100,000 tasks, quick
    .venv/bin/python bench/index_snapshot.py --tasks 10000000 --cold

What is timed, on one index built from synthetic rows (`load_tasks.Loader`'s mix, no SQLite):
- build: `TaskIndex.load` over the rows in chunks of 100,000, as a server start does after
  reading them (the reads themselves are not counted, so a real start costs more);
- to_state: the copy a caller takes while writers wait (into `spare_columns`, made before),
  twice, and what of it the bitmaps take; then without spare columns;
- write: `snapshot.save` of that copy (serialize, checksum, write, fsync, rename); then again
  beside a thread spinning in Python, and the longest that thread waited for the GIL;
- load: `snapshot.load` in a fresh process, with its RSS before and after; `--cold` first
  drops the file's pages from the page cache (posix_fadvise), so the disk read counts.
The loaded index is checked against the original on a few queries.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness
import load_tasks
from taskhub.server.index import snapshot
from taskhub.server.index.task_index import TaskIndex
from taskhub.server.model import TaskQuery, TaskStatus as S, TaskType as T

CHUNK = 100_000


def index_rows(rows: list[tuple]) -> list[tuple]:
    """`load_tasks` rows as `Store.index_rows` answers them: the filterable fields, -1 for nulls."""
    return [
        (
            uid,
            status,
            type_,
            -1 if canceled is None else canceled,
            enq,
            -1 if st is None else st,
            -1 if fin is None else fin,
            index_uid,
        )
        for uid, index_uid, status, type_, canceled, _, _, enq, st, fin, _ in rows
    ]


def build(tasks: int) -> tuple[TaskIndex, float, float]:
    """An index of `tasks` tasks; answers it, the seconds `load` took and the seconds making the rows took."""
    loader = load_tasks.Loader(None, tasks, 30, 7, time.time_ns() // 1_000)
    index, loading, making = TaskIndex(), 0.0, 0.0
    for start in range(0, tasks, CHUNK):
        t0 = time.perf_counter()
        rows = index_rows(loader.rows(start, min(tasks, start + CHUNK))[0])
        t1 = time.perf_counter()
        index.load(rows)
        loading += time.perf_counter() - t1
        making += t1 - t0
    return index, loading, making


def queries(tasks: int) -> list[TaskQuery]:
    return [
        TaskQuery(),
        TaskQuery(statuses=frozenset({S.FAILED})),
        TaskQuery(index_uids=frozenset({"index-00"}), statuses=frozenset({S.SUCCEEDED})),
        TaskQuery(types=frozenset({T.DOCUMENT_DELETION}), canceled_by=frozenset({load_tasks.CANCEL_EVERY - 1})),
        TaskQuery(below_uid=tasks // 2, statuses=frozenset({S.CANCELED})),
    ]


def timed_write(state, path: Path) -> tuple[float, float, float]:
    """Seconds `snapshot.save` took on a thread while this one spun, the longest this one then
    waited between two looks at the clock, and the longest it waits spinning alone as long
    (the machine's own noise: other processes take the core too)."""
    done, took = threading.Event(), [0.0]

    def write() -> None:
        t0 = time.perf_counter()
        snapshot.save(state, path, seq=1, epoch="bench")
        took[0] = time.perf_counter() - t0
        done.set()

    writer = threading.Thread(target=write)
    longest, last = 0.0, time.perf_counter()
    writer.start()
    while not done.is_set():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    writer.join()
    alone, last = 0.0, time.perf_counter()
    end = last + took[0]
    while last < end:
        now = time.perf_counter()
        alone, last = max(alone, now - last), now
    return took[0], longest, alone


def load_in_fresh_process(path: Path) -> None:
    """`--load-only`: loads the snapshot and prints its figures as `name=value` lines."""
    print(f"rss_before={harness.rss_mib(os.getpid()):.1f}")
    t0 = time.perf_counter()
    loaded = snapshot.load(path)
    print(f"load={time.perf_counter() - t0:.3f}")
    print(f"rss_after={harness.rss_mib(os.getpid()):.1f}")
    print(f"tasks={len(loaded.index.all) if loaded else -1}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the index (default 100,000)")
    parser.add_argument("--dir", help="write the snapshot here and keep it (default: a temporary folder)")
    parser.add_argument("--cold", action="store_true", help="drop the snapshot's pages from the page cache first")
    parser.add_argument("--load-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        load_in_fresh_process(Path(args.load_only))
        return 0

    print(f"index snapshot at {args.tasks:,} tasks", flush=True)
    rss0 = harness.rss_mib(os.getpid())
    index, building, making = build(args.tasks)
    harness.figure("build from rows (TaskIndex.load)", f"{building:8.3f} s  (making the rows: {making:.1f} s)")
    harness.figure("RSS of the built index", f"{harness.rss_mib(os.getpid()) - rss0:8.1f} MiB")
    for attempt in ("first", "again"):  # the first copy's memory is new to the process, and faults in slower
        t0 = time.perf_counter()
        spare = index.spare_columns()
        preparing = time.perf_counter() - t0
        t0 = time.perf_counter()
        state = index.to_state(spare)
        copying = time.perf_counter() - t0
        harness.figure(f"spare_columns, {attempt} (no lock)", f"{preparing * 1000:8.1f} ms")
        harness.figure(f"to_state(spare), {attempt} (writers wait)", f"{copying * 1000:8.1f} ms")
    tables = [*index._sets.values(), *index.buckets.values()]  # the bitmaps' share, read off the index's own
    t0 = time.perf_counter()
    for bits in [index.all, *(bits for table in tables for bits in table.values())]:
        bits.serialize()
    harness.figure("  of which serializing the bitmaps", f"{(time.perf_counter() - t0) * 1000:8.1f} ms")
    t0 = time.perf_counter()
    index.to_state()
    harness.figure("to_state() without spare columns", f"{(time.perf_counter() - t0) * 1000:8.1f} ms")
    with harness.scratch_dir(args.dir) as folder:
        path = folder / f"index-{args.tasks}.snapshot"
        t0 = time.perf_counter()
        snapshot.save(state, path, seq=1, epoch="bench")
        harness.figure("write (no lock)", f"{time.perf_counter() - t0:8.3f} s")
        writing, stall, noise = timed_write(state, path)
        harness.figure(
            "  beside a busy thread",
            f"{writing:8.3f} s  (that thread's longest wait {stall * 1000:.1f} ms; alone {noise * 1000:.1f} ms)",
        )
        del state, spare
        size = path.stat().st_size
        harness.figure("file size", f"{size / 2**20:8.1f} MiB  ({size / max(args.tasks, 1):.1f} bytes a task)")
        if args.cold:
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        out = subprocess.run(
            [sys.executable, __file__, "--load-only", str(path)], capture_output=True, text=True, check=True
        ).stdout
        figures = dict(line.split("=", 1) for line in out.split())
        loading = float(figures["load"])
        cache = "cold: file pages dropped first" if args.cold else "warm page cache"
        harness.figure("load (fresh process)", f"{loading:8.3f} s  ({cache})")
        harness.figure(
            "RSS before / after load",
            f"{float(figures['rss_before']):8.1f} / {float(figures['rss_after']):.1f} MiB",
        )
        if int(figures["tasks"]) != len(index.all):
            print(f"  !! the fresh process loaded {figures['tasks']} tasks, not {len(index.all)}", flush=True)
            return 1
        loaded = snapshot.load(path)
        for query in queries(args.tasks):
            if loaded.index.page(query, limit=20, from_uid=None, reverse=False) != index.page(
                query, limit=20, from_uid=None, reverse=False
            ) or loaded.index.select(query) != index.select(query):
                print(f"  !! the loaded index answers {query} otherwise", flush=True)
                return 1
    harness.ratio_line("snapshot load / build from rows", loading / building, "<= 0.2", loading <= 0.2 * building)
    harness.target_line(f"snapshot load at {args.tasks:,} tasks", f"{loading:.3f} s", "<= 5 s", loading <= 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
