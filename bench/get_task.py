"""GetTask throughput against a bare grpc.health.v1 Check on the same server, client in another process.

    .venv/bin/python bench/get_task.py                       # 10,000 tasks, 3 rounds of 2 s per side
    .venv/bin/python bench/get_task.py --tasks 1000000 --seconds 5 --rounds 3

`taskhub serve` runs in a subprocess over a database from `load_tasks.py`; this
process is the client (grpc.aio, `--concurrency` calls in flight on one channel).
Phases alternate Check, GetTask, Check, GetTask... so drift hits both sides alike.
The Check is answered by the same server process, event loop and options as GetTask,
so the ratio is what GetTask's own path costs (auth, the store-thread hop, the SQLite
read, protobuf conversion). Server CPU per call (psutil) shows where the time goes
even when the client is the bottleneck. Target: GetTask QPS >= 0.8 x Check QPS.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

import harness
import load_tasks
from taskhub.v1 import task_service_pb2 as pb, task_service_pb2_grpc


async def run(target: str, server_pid: int, args) -> dict[str, dict]:
    rng = random.Random(3)
    server = psutil.Process(server_pid)
    me = psutil.Process()
    sides = {
        "Check": {"calls": 0, "seconds": 0.0, "lat": [], "server_cpu": 0.0, "client_cpu": 0.0},
        "GetTask": {"calls": 0, "seconds": 0.0, "lat": [], "server_cpu": 0.0, "client_cpu": 0.0},
    }
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check
        get = task_service_pb2_grpc.TaskServiceStub(channel).GetTask
        check_request = health_pb2.HealthCheckRequest()
        # Made before the clock starts, as Check's one request is: the client's work per call
        # counts on this 2-core machine, and drawing and building a request is not the server's.
        gets = itertools.cycle([pb.GetTaskRequest(uid=rng.randrange(args.tasks)) for _ in range(8192)])
        calls = {"Check": (health, lambda: check_request), "GetTask": (get, lambda: next(gets))}
        for call, make in calls.values():  # warm-up, unmeasured
            await harness.phase(call, make, 0.3, args.concurrency)
        for _ in range(args.rounds):
            for name, (call, make) in calls.items():
                cpu_s, cpu_c, t0 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.perf_counter()
                count, lat = await harness.phase(call, make, args.seconds, args.concurrency)
                side = sides[name]
                side["seconds"] += time.perf_counter() - t0
                side["calls"] += count
                side["lat"] += lat
                side["server_cpu"] += sum(server.cpu_times()[:2]) - cpu_s
                side["client_cpu"] += sum(me.cpu_times()[:2]) - cpu_c
    return sides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks stored (GetTask asks for random ones)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one phase")
    parser.add_argument("--rounds", type=int, default=3, help="Check/GetTask phase pairs")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    parser.add_argument("--db-dir", help="keep and reuse the loaded database here")
    args = parser.parse_args()

    with harness.scratch_dir(args.db_dir) as db_dir, tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        db = load_tasks.ensure(db_dir, args.tasks, quiet=True)
        # The server writes on start (processing tasks go back to enqueued): serve a copy.
        copy = Path(tmp) / "copy.db"
        shutil.copyfile(db, copy)
        with harness.Server(copy, "--cleanup-threshold", str(2**40)) as server:
            sides = asyncio.run(run(server.target, server.pid, args))
    print(
        f"GetTask vs grpc.health.v1 Check, {args.concurrency} in flight, {args.rounds} x {args.seconds:g}s each,"
        f" {args.tasks:,} tasks stored",
        flush=True,
    )
    harness.machine_noise()
    qps = {}
    for name, side in sides.items():
        qps[name] = side["calls"] / side["seconds"]
        latency = harness.Latency(side["lat"])
        harness.figure(name, f"{qps[name]:8,.0f} calls/s  {latency}")
        harness.figure(
            "",
            f"server CPU {1e6 * side['server_cpu'] / max(side['calls'], 1):6.0f} us/call,"
            f" client CPU {1e6 * side['client_cpu'] / max(side['calls'], 1):6.0f} us/call",
        )
    ratio = qps["GetTask"] / qps["Check"]
    harness.ratio_line("GetTask/Check QPS", ratio, ">= 0.8", ratio >= 0.8)
    cpu = {n: s["server_cpu"] / max(s["calls"], 1) for n, s in sides.items()}
    harness.figure(
        "server CPU per call, Check/GetTask",
        f"{cpu['Check'] / cpu['GetTask']:.3f} (what the ratio would be with a client that costs nothing)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
