"""End to end, enqueue -> lease -> complete with 4 worker processes, against huey's SQLite queue.

    .venv/bin/python bench/end_to_end.py                      # 2,000 tasks each side
    .venv/bin/python bench/end_to_end.py --tasks 20000

taskhub: `taskhub serve` in a subprocess on a fresh database; `--workers` worker
processes long-poll LeaseTasks (up to 100 tasks a batch) and report every task
succeeded with CompleteTasks at once (no-op tasks); this process enqueues `--tasks`
documentAdditionOrUpdate tasks over `--indexes` indexes from 64 concurrent callers,
once for each `--batch` size: 1 is one EnqueueTask call a task, more is EnqueueTasks
calls of that many tasks (a producer with work at hand).
The clock runs from the first enqueue to the last completion; enqueue-to-finish
latency comes from each task's `enqueuedAt` and `finishedAt`.

huey, in the same run: a SqliteHuey (fsync on, as taskhub's synchronous=FULL), this
process enqueues the same number of no-op tasks while `--workers` processes loop
`dequeue()` + `execute()` (the consumer's work without its polling delays).

Targets: taskhub >= 1,000 tasks/s, and taskhub tasks/s >= huey's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil

import harness
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

SUCCEEDED = task_pb2.TASK_STATUS_SUCCEEDED


def taskhub_worker(target: str, name: str, done, leases, goal: int, deadline: float, ready) -> None:
    """Leases and completes no-op batches until `goal` tasks are done (by all workers) or the deadline."""
    with grpc.insecure_channel(target) as channel:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        ready.release()
        while done.value < goal and time.time() < deadline:
            lease = stub.LeaseTasks(
                wpb.LeaseTasksRequest(worker=name, max_tasks=100, wait={"nanos": 200_000_000}), timeout=10
            )
            if not lease.HasField("lease"):
                continue
            stub.CompleteTasks(
                wpb.CompleteTasksRequest(
                    token=lease.lease.token, outcomes=[wpb.TaskOutcome(uid=t.uid) for t in lease.tasks]
                ),
                timeout=10,
            )
            with done.get_lock():
                done.value += len(lease.tasks)
                leases.value += 1


def make_huey(path: str):
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=path, fsync=True)

    def noop() -> None:
        return None

    noop.__module__ = "taskhub_bench"  # the same task name in this process and in spawned ones
    return huey, huey.task()(noop)


def huey_worker(path: str, done, goal: int, deadline: float, locked, ready) -> None:
    """huey's consumer loop without its polling delays; like the consumer, it logs lock errors and goes on."""
    huey, _ = make_huey(path)
    ready.release()
    while done.value < goal and time.time() < deadline:
        try:
            task = huey.dequeue()
        except sqlite3.OperationalError:  # "database is locked" past the 5 s busy timeout
            with locked.get_lock():
                locked.value += 1
            continue
        if task is None:
            time.sleep(0.001)
            continue
        try:
            huey.execute(task)
        except sqlite3.OperationalError:  # the task ran; huey's bookkeeping after it could not write
            with locked.get_lock():
                locked.value += 1
        with done.get_lock():
            done.value += 1


def start_workers(ctx, target, args_of, count: int) -> list:
    ready = ctx.Semaphore(0)
    processes = [ctx.Process(target=target, args=(*args_of(i), ready), daemon=True) for i in range(count)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire(timeout=60)
    return processes


def wait_done(done, goal: int, deadline: float, workers: list) -> float:
    while done.value < goal and time.time() < deadline and any(p.is_alive() for p in workers):
        time.sleep(0.001)
    return time.perf_counter()


async def produce(target: str, tasks: int, indexes: int, batch: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        counter = iter(range(0, tasks, batch))

        def request(i: int) -> pb.EnqueueTaskRequest:
            request = pb.EnqueueTaskRequest(
                type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=f"index-{i % indexes}"
            )
            request.details.document_addition_or_update.received_documents = 1
            return request

        async def producer() -> None:
            for first in counter:
                if batch == 1:
                    await stub.EnqueueTask(request(first), timeout=30)
                else:
                    await stub.EnqueueTasks(
                        pb.EnqueueTasksRequest(tasks=[request(i) for i in range(first, min(first + batch, tasks))]),
                        timeout=30,
                    )

        await asyncio.gather(*(producer() for _ in range(64)))


def finished_latencies(target: str) -> tuple[list[float], int]:
    """enqueuedAt -> finishedAt of every succeeded task, in seconds, and how many succeeded."""
    latencies, from_uid = [], None
    with grpc.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        while True:
            request = pb.ListTasksRequest(
                filter=task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[SUCCEEDED])), limit=10_000
            )
            if from_uid is not None:
                setattr(request, "from", from_uid)
            page = stub.ListTasks(request, timeout=60)
            for task in page.results:
                latencies.append(task.finished_at.ToMicroseconds() / 1e6 - task.enqueued_at.ToMicroseconds() / 1e6)
            if not page.HasField("next"):
                return latencies, len(latencies)
            from_uid = page.next


def run_taskhub(folder: Path, args, ctx, batch: int) -> tuple[float, list[float], int, dict]:
    with harness.Server(folder / f"e2e-{batch}.db") as server:
        deadline = time.time() + args.timeout
        done = ctx.Value("i", 0)
        leases = ctx.Value("i", 0, lock=False)  # updated under done's lock
        workers = start_workers(
            ctx,
            taskhub_worker,
            lambda i: (server.target, f"bench-{i}", done, leases, args.tasks, deadline),
            args.workers,
        )
        process, t0 = psutil.Process(server.pid), time.perf_counter()
        cpu = sum(process.cpu_times()[:2])
        asyncio.run(produce(server.target, args.tasks, args.indexes, batch))
        enqueued = time.perf_counter()
        t1 = wait_done(done, args.tasks, deadline, workers)
        cpu = sum(process.cpu_times()[:2]) - cpu
        for worker in workers:
            worker.join(timeout=15)
        latencies, succeeded = finished_latencies(server.target)
    figures = {
        "busy": cpu / (t1 - t0),
        "enqueue_share": (enqueued - t0) / (t1 - t0),
        "batch": done.value / max(leases.value, 1),
    }
    return done.value / (t1 - t0), latencies, succeeded, figures


def run_huey(folder: Path, args, ctx) -> tuple[float, int]:
    """huey's tasks/s, and how many times a call met "database is locked"."""
    path = str(folder / "huey.db")
    huey, noop = make_huey(path)
    done, locked, deadline = ctx.Value("i", 0), ctx.Value("i", 0), time.time() + args.timeout
    workers = start_workers(ctx, huey_worker, lambda i: (path, done, args.tasks, deadline, locked), args.workers)
    t0 = time.perf_counter()
    for _ in range(args.tasks):
        while True:
            try:
                noop()
                break
            except sqlite3.OperationalError:
                with locked.get_lock():
                    locked.value += 1
    t1 = wait_done(done, args.tasks, deadline, workers)
    for process in workers:
        process.join(timeout=15)
    huey.storage.close()
    return done.value / (t1 - t0), locked.value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4, help="worker processes on each side")
    parser.add_argument("--indexes", type=int, default=16, help="taskhub tasks are spread over this many indexes")
    parser.add_argument("--timeout", type=float, default=300, help="give up on a side after this many seconds")
    parser.add_argument(
        "--batch", default="1,100", help="comma-separated tasks per enqueue call, one taskhub run each (1: EnqueueTask)"
    )
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    ctx = mp.get_context("spawn")  # no fork after grpc has started threads

    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        runs = {batch: run_taskhub(Path(tmp), args, ctx, batch) for batch in batches}
        huey_rate, locked = run_huey(Path(tmp), args, ctx)

    print(f"end to end, {args.tasks:,} no-op tasks, {args.workers} worker processes", flush=True)
    harness.figure(
        "huey SqliteHuey enqueue -> dequeue+execute",
        f"{huey_rate:8,.0f} tasks/s  ({locked} 'database is locked' errors, retried)",
    )
    complete = True
    for batch, (rate, latencies, succeeded, figures) in runs.items():
        how = "EnqueueTask" if batch == 1 else f"EnqueueTasks of {batch}"
        harness.figure(f"taskhub, {how}", f"{rate:8,.0f} tasks/s  ({succeeded:,} succeeded)")
        harness.figure("  enqueuedAt -> finishedAt", str(harness.Latency(latencies)))
        harness.figure(
            "  server CPU", f"{100 * figures['busy']:.0f}% of one core (one event loop + one store thread, one GIL)"
        )
        harness.figure(
            "  enqueueing took",
            f"{100 * figures['enqueue_share']:.0f}% of the run; tasks per lease {figures['batch']:.1f}",
        )
        ratio = rate / huey_rate if huey_rate else float("inf")
        harness.ratio_line(f"taskhub/huey tasks/s [{how}]", ratio, ">= 1", ratio >= 1)
        harness.target_line(f"taskhub tasks/s [{how}]", f"{rate:,.0f}", ">= 1,000", rate >= 1_000)
        complete = complete and succeeded >= args.tasks
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
