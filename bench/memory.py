"""Server RSS, idle, with 1,000,000 tasks stored, against the same server on an empty database.

    .venv/bin/python bench/memory.py                                      # 100,000 tasks
    .venv/bin/python bench/memory.py --tasks 1000000 --db-dir /tmp/taskhub-bench

`taskhub serve` runs in a subprocess over a database from `load_tasks.py`, with the
automatic cleanup out of the way (`--cleanup-threshold` above the task count), so
"idle" means idle. RSS is read from /proc after `--settle` seconds, then again
after a few reads (ListTasks with `total`, GetTask) and another quiet spell.
Baseline in the same run: the same server on an empty database.

With `--default-cleanup`, a third server runs with the default settings: at
1,000,000 tasks the automatic cleanup enqueues and runs a deletion of the 100,000
oldest finished tasks right after start; its peak RSS is shown too.
Target: idle RSS <= 200 MiB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc

import harness
import load_tasks
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc


def touch(target: str, tasks: int) -> None:
    """A few ordinary reads: a listing with `total` per status, and some GetTasks."""
    with grpc.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        for status in range(1, 6):
            stub.ListTasks(
                pb.ListTasksRequest(filter=task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[status]))),
                timeout=120,
            )
        stub.ListTasks(pb.ListTasksRequest(), timeout=120)
        for uid in range(0, tasks, max(tasks // 100, 1)):
            stub.GetTask(pb.GetTaskRequest(uid=uid), timeout=10)


def idle_rss(db: Path, tasks: int, settle: float, *extra: str) -> tuple[float, float]:
    with harness.Server(db, *extra) as server:
        time.sleep(settle)
        cold = harness.rss_mib(server.pid)
        touch(server.target, tasks)
        time.sleep(settle)
        return cold, harness.rss_mib(server.pid)


def cleanup_peak(db: Path, seconds: float) -> tuple[float, float]:
    """Peak RSS while the default automatic cleanup runs, and the RSS at the end."""
    with harness.Server(db) as server:
        peak, stop = 0.0, time.monotonic() + seconds
        while time.monotonic() < stop:
            peak = max(peak, harness.rss_mib(server.pid))
            time.sleep(0.1)
        return peak, harness.rss_mib(server.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--db-dir", help="keep and reuse the loaded database here")
    parser.add_argument("--settle", type=float, default=3.0, help="quiet seconds before each reading")
    parser.add_argument(
        "--default-cleanup",
        action="store_true",
        help="also run the default settings on a copy (the automatic cleanup fires at 1,000,000)",
    )
    args = parser.parse_args()

    with harness.scratch_dir(args.db_dir) as db_dir, tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        db = load_tasks.ensure(db_dir, args.tasks, quiet=True)
        # The server writes on start (processing tasks go back to enqueued): serve copies.
        copy = Path(tmp) / "copy.db"
        no_cleanup = ("--cleanup-threshold", str(2**40))
        empty = idle_rss(Path(tmp) / "empty.db", 0, args.settle, *no_cleanup)
        shutil.copyfile(db, copy)
        full = idle_rss(copy, args.tasks, args.settle, *no_cleanup)
        cleanup = None
        if args.default_cleanup:
            shutil.copyfile(db, copy)
            cleanup = cleanup_peak(copy, 30.0)

    print(f"server RSS, idle, {args.tasks:,} tasks stored vs an empty database", flush=True)
    harness.figure("empty database", f"after start {empty[0]:6.0f} MiB, after reads {empty[1]:6.0f} MiB")
    harness.figure(f"{args.tasks:,} tasks", f"after start {full[0]:6.0f} MiB, after reads {full[1]:6.0f} MiB")
    if cleanup is not None:
        harness.figure(
            "default settings (automatic cleanup)", f"peak {cleanup[0]:6.0f} MiB, after 30 s {cleanup[1]:6.0f} MiB"
        )
    idle = max(full)
    harness.ratio_line(f"RSS {args.tasks:,} tasks/empty", idle / max(empty), "(information)", True)
    harness.target_line("idle RSS", f"{idle:.0f} MiB", "<= 200 MiB", idle <= 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
