"""Durable enqueue with 64 concurrent producers: over gRPC against the bare RPC rate, and store side.

    .venv/bin/python bench/enqueue.py                         # 3 rounds of 2 s per side
    .venv/bin/python bench/enqueue.py --seconds 5 --rounds 3

Part 1, over gRPC: `taskhub serve` in a subprocess on a fresh database; this process
runs `--producers` callers (grpc.aio, one channel), alternating phases of EnqueueTask
(documentAdditionOrUpdate, a durable commit each) and of a bare grpc.health.v1 Check
answered by the same server. Target: enqueues/s >= 0.8 x Checks/s.

Part 2, store side: in this process, `--producers` coroutines call `Scheduler.enqueue`
on a fresh `Store` (the group commit: enqueues waiting while a commit runs share the
next transaction and its fsync), beside raw SQLite doing the same batches with one
`executemany` per transaction on the same schema and pragmas (WAL, synchronous=FULL).
Target: >= 20,000 enqueues/s.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

import harness
from taskhub.server.index.memory import MemoryFinder
from taskhub.server.model import TaskStatus, TaskType
from taskhub.server.rules.scheduler import Scheduler
from taskhub.server.storage.sqlite.database import SqliteStorage as Store
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc


async def over_grpc(target: str, server_pid: int, args) -> dict[str, dict]:
    server = psutil.Process(server_pid)
    enqueue = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="movies")
    enqueue.details.document_addition_or_update.received_documents = 10
    sides = {name: {"calls": 0, "seconds": 0.0, "lat": [], "cpu": 0.0} for name in ("Check", "EnqueueTask")}
    async with grpc.aio.insecure_channel(target) as channel:
        calls = {
            "Check": (health_pb2_grpc.HealthStub(channel).Check, health_pb2.HealthCheckRequest()),
            "EnqueueTask": (task_service_pb2_grpc.TaskServiceStub(channel).EnqueueTask, enqueue),
        }
        for call, request in calls.values():
            await harness.phase(call, lambda: request, 0.3, args.producers)
        for _ in range(args.rounds):
            for name, (call, request) in calls.items():
                cpu, t0 = sum(server.cpu_times()[:2]), time.perf_counter()
                count, lat = await harness.phase(call, lambda: request, args.seconds, args.producers)
                side = sides[name]
                side["seconds"] += time.perf_counter() - t0
                side["calls"] += count
                side["lat"] += lat
                side["cpu"] += sum(server.cpu_times()[:2]) - cpu
    return sides


async def store_side(folder: Path, args) -> tuple[float, harness.Latency, int]:
    """Scheduler.enqueue from `producers` coroutines: enqueues/s, latency, and how many tasks."""
    store = Store(folder / "store-side.db")
    scheduler = Scheduler(store, MemoryFinder(), cleanup_threshold=2**62)
    await scheduler.start(background=False)  # recovery and the in-memory index, as a server does
    stop = time.monotonic() + args.seconds * args.rounds
    latencies: list[float] = []

    async def producer(i: int) -> None:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            await scheduler.enqueue(TaskType.DOCUMENT_ADDITION_OR_UPDATE, f"index-{i % 8}", {"receivedDocuments": 10})
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(args.producers)))
    elapsed = time.perf_counter() - t0
    await scheduler.stop()
    count = store.tasks.count()
    store.close()
    return count / elapsed, harness.Latency(latencies), count


def raw_side(folder: Path, args, batch: int) -> float:
    """The same rows in `batch`-sized transactions of plain executemany on the same schema: rows/s."""
    path = folder / "raw.db"
    Store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    uid, stop, t0 = 0, time.monotonic() + args.seconds * args.rounds, time.perf_counter()
    while time.monotonic() < stop:
        rows = [
            (
                uid + i,
                f"index-{i % 8}",
                int(TaskStatus.ENQUEUED),
                int(TaskType.DOCUMENT_ADDITION_OR_UPDATE),
                '{"receivedDocuments":10,"indexedDocuments":null}',
                1_700_000_000_000_000,
                uid + i + 1,
            )
            for i in range(batch)
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO tasks (uid, index_uid, status, type, details, enqueued_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        uid += batch
    elapsed = time.perf_counter() - t0
    conn.close()
    return uid / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one phase")
    parser.add_argument("--rounds", type=int, default=3, help="Check/EnqueueTask phase pairs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        folder = Path(tmp)
        with harness.Server(folder / "grpc.db") as server:
            sides = asyncio.run(over_grpc(server.target, server.pid, args))
        rate, latency, _ = asyncio.run(store_side(folder, args))
        raw = raw_side(folder, args, args.producers)

    print(f"durable enqueue, {args.producers} producers, {args.rounds} x {args.seconds:g}s per side", flush=True)
    qps = {}
    for name, side in sides.items():
        qps[name] = side["calls"] / side["seconds"]
        harness.figure(f"gRPC {name}", f"{qps[name]:8,.0f} calls/s  {harness.Latency(side['lat'])}")
        harness.figure("", f"server CPU {1e6 * side['cpu'] / max(side['calls'], 1):6.0f} us/call")
    ratio = qps["EnqueueTask"] / qps["Check"]
    harness.ratio_line("EnqueueTask/Check calls/s", ratio, ">= 0.8", ratio >= 0.8)
    harness.figure("store side Scheduler.enqueue", f"{rate:8,.0f} enqueues/s  {latency}")
    harness.figure(f"raw SQLite, {args.producers}-row transactions", f"{raw:8,.0f} rows/s")
    harness.ratio_line("store side/raw SQLite rows/s", rate / raw, "(information)", True)
    harness.target_line("store side enqueues/s", f"{rate:,.0f}", ">= 20,000", rate >= 20_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
