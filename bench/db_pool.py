"""What `--db-pool-size` buys on PostgreSQL: long reads (ListTasks pages past the loop's 200) with 1, 2 and 4 read
connections, each on its own thread, against one server on a throwaway cluster.

    .venv/bin/python bench/db_pool.py                       # 5,000 tasks, 8 callers, 5 s a size
    .venv/bin/python bench/db_pool.py --tasks 20000 --seconds 10
    .venv/bin/python bench/db_pool.py --sqlite              # the same on a SQLite file

Prints per pool size: pages/s, p50/p99, and the CPU seconds the server and PostgreSQL spent per 1,000 pages.
A page's rows are read (PostgreSQL's work, another process) and decoded into tasks (the server's, under the GIL):
more connections overlap the first with the second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import grpc
import psutil

import harness
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc

sys.path.insert(0, str(harness.ROOT / "tests"))
import postgres_cluster


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def postgres_processes(cluster: postgres_cluster.Cluster) -> list[psutil.Process]:
    pid = int((cluster.folder / "data" / "postmaster.pid").read_text().split()[0])
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


async def load(target: str, tasks: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        for start in range(0, tasks, 100):
            batch = [
                pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid=f"i{n % 50}")
                for n in range(start, min(tasks, start + 100))
            ]
            await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=batch))


async def lists(target: str, seconds: float, callers: int, page: int) -> tuple[int, list[float]]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        await stub.ListTasks(pb.ListTasksRequest(limit=page))  # warm
        return await harness.phase(stub.ListTasks, lambda: pb.ListTasksRequest(limit=page), seconds, callers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--page", type=int, default=1_000)
    parser.add_argument("--sizes", default="1,2,4")
    parser.add_argument("--sqlite", action="store_true", help="the same on a SQLite file, for comparison")
    args = parser.parse_args()
    cluster = postgres_cluster.start()
    try:
        harness.machine_noise()
        for run, size in enumerate(int(s) for s in args.sizes.split(",")):
            db = f"{cluster.folder}/pool_{run}.db" if args.sqlite else cluster.create_database(f"pool_{run}_{size}")
            with harness.Server(db, "--db-pool-size", str(size)) as server:
                asyncio.run(load(server.target, args.tasks))
                watched = [psutil.Process(server.pid), *postgres_processes(cluster)]
                server_cpu, pg_cpu = cpu_seconds(watched[:1]), cpu_seconds(watched[1:])
                started = time.perf_counter()
                count, latencies = asyncio.run(lists(server.target, args.seconds, args.callers, args.page))
                elapsed = time.perf_counter() - started
                watched = [psutil.Process(server.pid), *postgres_processes(cluster)]
                server_cpu = cpu_seconds(watched[:1]) - server_cpu
                pg_cpu = cpu_seconds(watched[1:]) - pg_cpu
                latency = harness.Latency(latencies)
                harness.figure(
                    f"{'sqlite' if args.sqlite else 'postgres'} pool {size}: pages of {args.page}",
                    f"{count / elapsed:8.1f}/s  {latency}  cpu/1k pages: server {1000 * server_cpu / max(count, 1):.1f} s,"
                    f" postgres {1000 * pg_cpu / max(count, 1):.1f} s",
                )
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
