"""Delayed runs: how soon after its `runAt` a task is leased, at a steady rate of tasks falling due.

    .venv/bin/python bench/delayed.py                       # 500 due tasks/s for 10 s
    .venv/bin/python bench/delayed.py --rate 500 --seconds 30 --workers 4
    .venv/bin/python bench/delayed.py --backlog 100000       # with 100,000 tasks waiting a day ahead

`taskhub serve` in a subprocess on a fresh database; `--workers` worker processes long-poll
LeaseTasks and report each batch succeeded at once. This process enqueues `--rate` tasks a
second (EnqueueTasks of one pacing tick's worth, over `--indexes` indexes), each with a
`runAt` `--lead` seconds ahead, so they fall due at that rate while the queue also holds
the ones still waiting. A task's latency is its `startedAt` (the lease's time, the server's
clock) minus its `runAt`: due-to-leased, nothing of the network or the client's clock in it.

`--backlog N` first enqueues N tasks a day ahead (older uids than every measured task), in both
runs: what a lease pays for tasks that wait far longer than the ones falling due.

Baseline, in the same run: the same tasks at the same rate without a `runAt`, measured
enqueuedAt -> startedAt (how soon a task that is due at once gets leased).

Target: due-to-leased p99 <= 100 ms at 500 due tasks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import grpc

import harness
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

TICK = 0.02  # the producer enqueues one tick's worth of tasks every 20 ms


def worker(target: str, name: str, done, goal: int, deadline: float, ready) -> None:
    """Leases and completes no-op batches until `goal` tasks are done (by all workers) or the deadline."""
    with grpc.insecure_channel(target) as channel:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        ready.release()
        while done.value < goal and time.time() < deadline:
            lease = stub.LeaseTasks(
                wpb.LeaseTasksRequest(worker=name, max_tasks=100, wait={"nanos": 500_000_000}), timeout=10
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


async def produce(target: str, rate: int, seconds: float, indexes: int, lead: float | None) -> int:
    """Enqueues `rate` tasks a second for `seconds`, each `lead` seconds ahead (None: due at once)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        sent, start = 0, time.monotonic()
        ticks = round(seconds / TICK)
        for tick in range(ticks):
            # Paced on the clock, not on the calls: a slow call is caught up in the next tick.
            goal = round(rate * (tick + 1) * TICK)
            requests = []
            for i in range(sent, goal):
                request = pb.EnqueueTaskRequest(
                    type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=f"index-{i % indexes}"
                )
                request.details.document_addition_or_update.received_documents = 1
                if lead is not None:
                    request.run_at.FromNanoseconds(time.time_ns() + int(lead * 1e9))
                requests.append(request)
            if requests:
                await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=requests), timeout=30)
            sent = goal
            await asyncio.sleep(max(0.0, start + (tick + 1) * TICK - time.monotonic()))
        return sent


def latencies(target: str) -> list[float]:
    """startedAt - (runAt, else enqueuedAt) of every succeeded task, in seconds."""
    out, from_uid = [], None
    with grpc.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        while True:
            request = pb.ListTasksRequest(
                filter=task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[task_pb2.TASK_STATUS_SUCCEEDED])),
                limit=10_000,
            )
            if from_uid is not None:
                setattr(request, "from", from_uid)
            page = stub.ListTasks(request, timeout=60)
            for task in page.results:
                due = task.run_at if task.HasField("run_at") else task.enqueued_at
                out.append((task.started_at.ToMicroseconds() - due.ToMicroseconds()) / 1e6)
            if not page.HasField("next"):
                return out
            from_uid = page.next


async def backlog(target: str, count: int) -> None:
    """`count` tasks a day ahead, in EnqueueTasks of 1,000."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        for first in range(0, count, 1_000):
            requests = []
            for i in range(first, min(first + 1_000, count)):
                request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid=f"later-{i % 64}")
                request.run_at.FromNanoseconds(time.time_ns() + 86_400 * 10**9)
                requests.append(request)
            await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=requests), timeout=60)


def run(folder: Path, args, ctx, lead: float | None) -> tuple[list[float], int, int]:
    goal = round(args.rate * args.seconds)
    name = "delayed" if lead is not None else "at-once"
    with harness.Server(folder / f"{name}.db") as server:
        if args.backlog:
            asyncio.run(backlog(server.target, args.backlog))
        deadline = time.time() + args.seconds + (lead or 0) + 60
        done, ready = ctx.Value("i", 0), ctx.Semaphore(0)
        workers = [
            ctx.Process(target=worker, args=(server.target, f"bench-{i}", done, goal, deadline, ready), daemon=True)
            for i in range(args.workers)
        ]
        for process in workers:
            process.start()
        for _ in workers:
            ready.acquire(timeout=60)
        sent = asyncio.run(produce(server.target, args.rate, args.seconds, args.indexes, lead))
        while done.value < sent and time.time() < deadline:
            time.sleep(0.01)
        for process in workers:
            process.join(timeout=15)
        measured = latencies(server.target)
    return measured, sent, done.value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500, help="tasks falling due each second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long tasks keep coming")
    parser.add_argument("--lead", type=float, default=2.0, help="each task's runAt is this far ahead at enqueue")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--indexes", type=int, default=4, help="tasks are spread over this many indexes")
    parser.add_argument("--backlog", type=int, default=0, help="tasks enqueued a day ahead before the run")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")  # no fork after grpc has started threads

    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        delayed, sent, done = run(Path(tmp), args, ctx, args.lead)
        at_once, sent_now, done_now = run(Path(tmp), args, ctx, None)

    print(
        f"delayed runs, {args.rate:,} tasks/s falling due for {args.seconds:g} s ({args.lead:g} s ahead),"
        f" {args.workers} worker processes, {args.backlog:,} tasks waiting a day ahead",
        flush=True,
    )
    harness.figure("runAt -> startedAt (due-to-leased)", f"{harness.Latency(delayed)}  ({done:,} of {sent:,} done)")
    harness.figure("baseline: enqueuedAt -> startedAt", f"{harness.Latency(at_once)}  ({done_now:,} of {sent_now:,})")
    early = sum(1 for latency in delayed if latency < 0)
    harness.figure("leased before their runAt", f"{early}")
    p99, base = harness.Latency(delayed).p99, harness.Latency(at_once).p99
    ratio = p99 / base if base else float("inf")
    harness.ratio_line("due-to-leased p99 / at-once enqueued-to-leased p99", ratio, "(none; for reading)", True)
    harness.target_line("due-to-leased p99", f"{p99:.1f} ms", "<= 100 ms", p99 <= 100 and early == 0)
    return 0 if done >= sent and early == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
