"""Claims (LeaseTasks + CompleteTasks) on PostgreSQL with a small backlog and with 1,000,000 tasks enqueued.

    .venv/bin/python bench/claims.py                          # 20,000 backlog, small sizes
    .venv/bin/python bench/claims.py --backlog 1000000 --claim 20000

One `taskhub serve` on a database of a throwaway durable cluster (fsync on). In the same
server process, so with whatever plans it prepared while the table was small:

1. `small`: `--claim` + `--small` tasks enqueued, `--workers` processes lease 100 and complete
   until `--claim` tasks are done (the backlog falls from `--claim` + `--small` to `--small`);
2. `big`: the backlog topped up to `--backlog` (EnqueueTasks of 1,000), `--claim` more claimed;
3. `restarted`: the server restarted on that database (its start timed: the index is built
   from every row) and `--claim` more claimed.

Each phase prints tasks/s, LeaseTasks and CompleteTasks p50/p99 (leases that got tasks),
UNIT_LOCK's hold, and how many sequential scans of `tasks` PostgreSQL ran during it
(pg_stat_user_tables): a claim walking the table shows there. Targets: claims at the big
backlog >= 0.8 x the small one, and no sequential scan of `tasks` while claiming.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil
import psycopg

import harness
import postgres
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

postgres_cluster = postgres.postgres_cluster


def claimer(target: str, name: str, done, goal: int, deadline: float, out, ready) -> None:
    """Leases 100 at a time and completes them until `goal` tasks are done by all; puts its latencies on `out`."""
    lease_lat: list[float] = []
    complete_lat: list[float] = []
    with grpc.insecure_channel(target) as channel:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        ready.release()
        while done.value < goal and time.time() < deadline:
            t0 = time.perf_counter()
            lease = stub.LeaseTasks(
                wpb.LeaseTasksRequest(worker=name, max_tasks=100, wait={"nanos": 200_000_000}), timeout=30
            )
            if not lease.HasField("lease"):
                continue
            t1 = time.perf_counter()
            stub.CompleteTasks(
                wpb.CompleteTasksRequest(
                    token=lease.lease.token, outcomes=[wpb.TaskOutcome(uid=t.uid) for t in lease.tasks]
                ),
                timeout=30,
            )
            lease_lat.append(t1 - t0)
            complete_lat.append(time.perf_counter() - t1)
            with done.get_lock():
                done.value += len(lease.tasks)
    out.put((lease_lat, complete_lat))


async def enqueue(target: str, tasks: int, producers: int = 8, batch: int = 1_000) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        counter = iter(range(0, tasks, batch))

        async def producer() -> None:
            for first in counter:
                last = min(first + batch, tasks)
                await stub.EnqueueTasks(
                    pb.EnqueueTasksRequest(tasks=[postgres.request(i, 16) for i in range(first, last)]), timeout=120
                )

        await asyncio.gather(*(producer() for _ in range(producers)))


def seq_scans(url: str) -> tuple[int, int]:
    """Sequential scans of `tasks` so far, and the rows they read."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT COALESCE(seq_scan, 0), COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'tasks'"
        ).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))


def database_state(url: str) -> dict[str, int]:
    """What PostgreSQL did so far that a phase may pay for: WAL, checkpoints, autovacuum, other tables' scans."""
    with psycopg.connect(url, autocommit=True) as conn:
        wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        checkpoints = conn.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()
        tables = conn.execute(
            "SELECT COALESCE(SUM(autovacuum_count + autoanalyze_count), 0),"
            " COALESCE(SUM(seq_tup_read) FILTER (WHERE relname <> 'tasks'), 0) FROM pg_stat_user_tables"
        ).fetchone()
        scanned = conn.execute(
            "SELECT relname, COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname <> 'tasks'"
        ).fetchall()
    return {
        **{f"rows:{name}": int(rows) for name, rows in scanned},
        "wal": int(wal[0]) if wal else 0,
        "checkpoints": int(checkpoints[0]) if checkpoints else 0,
        "autovacuums": int(tables[0]) if tables else 0,
        "other_rows_scanned": int(tables[1]) if tables else 0,
    }


def backlog(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM tasks WHERE status = %s", (task_pb2.TASK_STATUS_ENQUEUED,)).fetchone()
        return int(row[0]) if row else 0


def claim(server: harness.Server, url: str, lock_file: Path, args, ctx, postmaster: int) -> dict:
    """`--claim` tasks leased and completed by `--workers` processes; answers the phase's figures."""
    done, out = ctx.Value("i", 0), ctx.Queue()
    deadline = time.time() + args.timeout
    before_scans, before = seq_scans(url), database_state(url)
    server_cpu0, pg_cpu0 = sum(psutil.Process(server.pid).cpu_times()[:2]), postgres.postgres_cpu(postmaster)
    time.sleep(0.1)
    locks0 = json.loads(lock_file.read_text()) if lock_file.exists() else {}
    workers = postgres.end_to_end.start_workers(
        ctx, claimer, lambda i: (server.target, f"claims-{i}", done, args.claim, deadline, out), args.workers
    )
    t0 = time.perf_counter()
    t1 = postgres.end_to_end.wait_done(done, args.claim, deadline, workers)
    server_cpu, pg_cpu = (
        sum(psutil.Process(server.pid).cpu_times()[:2]) - server_cpu0,
        postgres.postgres_cpu(postmaster),
    )
    after = database_state(url)
    time.sleep(0.1)
    locks = postgres.lock_delta(locks0, json.loads(lock_file.read_text()))
    leases, completes = [], []
    for _ in workers:
        lease_lat, complete_lat = out.get(timeout=60)
        leases += lease_lat
        completes += complete_lat
    for worker in workers:
        worker.join(timeout=15)
    scans = seq_scans(url)
    return {
        "rate": done.value / (t1 - t0),
        "lease": harness.Latency(leases),
        "complete": harness.Latency(completes),
        "hold": locks.get("hold_ns", 0) / max(locks.get("units", 0), 1) / 1e6,
        "hold_p99": postgres.bucket_percentile(locks.get("hold_buckets", [0]), 99),
        "scans": (scans[0] - before_scans[0], scans[1] - before_scans[1]),
        "server_cpu": server_cpu / (t1 - t0),
        "pg_cpu": (pg_cpu - pg_cpu0) / (t1 - t0),
        "db": {key: after[key] - before[key] for key in after},
        "tasks": done.value,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000, help="the big backlog")
    parser.add_argument("--small", type=int, default=2_000, help="the small backlog left after the first phase")
    parser.add_argument("--claim", type=int, default=2_000, help="tasks claimed in each phase")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    cluster = postgres_cluster.start(durable=True)
    phases: dict[str, dict] = {}
    try:
        url = cluster.create_database("claims")
        postmaster = postgres.postmaster_pid(cluster)
        with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
            lock_file = Path(tmp) / "locks.json"
            env = {"TASKHUB_BENCH_LOCK_TIMES": str(lock_file)}
            with harness.Server(url, launcher=postgres.LAUNCHER, env=env) as server:
                asyncio.run(enqueue(server.target, args.claim + args.small))
                phases[f"small ({args.claim + args.small:,} -> {args.small:,})"] = claim(
                    server, url, lock_file, args, ctx, postmaster
                )
                top_up = args.backlog - backlog(url)
                t0 = time.perf_counter()
                asyncio.run(enqueue(server.target, top_up))
                loaded = time.perf_counter() - t0
                print(f"enqueued {top_up:,} more (EnqueueTasks of 1,000): {top_up / loaded:,.0f} tasks/s", flush=True)
                phases[f"big ({args.backlog:,})"] = claim(server, url, lock_file, args, ctx, postmaster)
            t0 = time.perf_counter()
            with harness.Server(url, launcher=postgres.LAUNCHER, env=env) as server:
                started = time.perf_counter() - t0
                print(f"the server restarted on {backlog(url):,} enqueued tasks in {started:.1f} s", flush=True)
                phases[f"restarted ({args.backlog - args.claim:,})"] = claim(
                    server, url, lock_file, args, ctx, postmaster
                )
    finally:
        cluster.stop()

    print(f"\nclaims on PostgreSQL (durable), {args.workers} workers leasing 100, {args.claim:,} tasks a phase")
    for name, f in phases.items():
        print(f"  {name}", flush=True)
        harness.figure("  claimed and completed", f"{f['rate']:8,.0f} tasks/s")
        harness.figure("  LeaseTasks", str(f["lease"]))
        harness.figure("  CompleteTasks", str(f["complete"]))
        harness.figure("  UNIT_LOCK hold", f"mean {f['hold']:.2f} ms, p99 <= {f['hold_p99']:.2f} ms")
        harness.figure("  sequential scans of tasks", f"{f['scans'][0]} ({f['scans'][1]:,} rows read)")
        harness.figure(
            "  CPU, % of a core", f"taskhub {100 * f['server_cpu']:.0f}%, PostgreSQL {100 * f['pg_cpu']:.0f}%"
        )
        db = f["db"]
        harness.figure(
            "  PostgreSQL meanwhile",
            f"WAL {db['wal'] / max(f['tasks'], 1) / 1024:,.1f} KiB/task, {db['checkpoints']} checkpoint(s),"
            f" {db['autovacuums']} autovacuum/analyze run(s),"
            f" {db['other_rows_scanned']:,} rows of other tables read by sequential scans",
        )
        scanned = sorted(((n, k[5:]) for k, n in db.items() if k.startswith("rows:") and n), reverse=True)
        if scanned:
            harness.figure("  sequential scans read", ", ".join(f"{table} {n:,} rows" for n, table in scanned[:3]))
    rates = [f["rate"] for f in phases.values()]
    ratio = min(rates[1:]) / rates[0]
    harness.ratio_line("claims/s at the big backlog / the small one", ratio, ">= 0.8", ratio >= 0.8)
    scans = sum(f["scans"][0] for f in phases.values())
    harness.target_line("sequential scans of tasks while claiming", str(scans), "0", scans == 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
