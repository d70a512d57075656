"""SQLite and PostgreSQL (1..N replicas on one database) side by side in one run: end to end, reads, CPU, the lock.

    .venv/bin/python bench/postgres.py                                    # 2,000 tasks, SQLite and 1 replica
    .venv/bin/python bench/postgres.py --tasks 20000 --replicas 1,2 --rounds 3

For each setup (SQLite: one `taskhub serve`; PostgreSQL: N `taskhub serve` on one database
of a throwaway durable cluster, fsync and synchronous_commit on) and each `--batch` size, the
end-to-end run of bench/end_to_end.py: `--workers` worker processes lease 100 tasks at a time
and complete them, 64 producers enqueue `--tasks` tasks with EnqueueTask (batch 1) or
EnqueueTasks; workers and producers are spread over the replicas. Measured:

- tasks/s and enqueuedAt -> finishedAt p50/p99;
- CPU seconds per 1,000 tasks of the taskhub processes, of PostgreSQL's processes (the
  postmaster's own and its reaped children's times and every live backend's, from /proc),
  and of the bench's clients, so capacity on bigger machines can be projected;
- how long units of work wait for `UNIT_LOCK` and hold it (counted in each replica's process,
  storage/postgres/lock_times.py, written out at exit by bench/serve_counted.py);
- after the last batch size, GetTask and ListTasks on one replica (the last one started);
- with 2+ replicas, a change committed through replica A reaching a WatchTasks watcher on B.

Setups run in an order that alternates each round (`--rounds`), so drift on a shared machine
falls on all of them. The table holds medians and [min-max] over the rounds. Then the
projection for an 8-core database, and the published figures of other queues beside ours.
Targets: PostgreSQL with one replica >= 0.7 x SQLite end to end; projected >= 50,000 tasks/s
batched on an 8-core database; NOTIFY p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil
import psycopg

import end_to_end
import harness
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc

sys.path.insert(0, str(harness.ROOT / "tests"))
import postgres_cluster  # the tests' throwaway cluster

LAUNCHER = str(Path(__file__).resolve().parent / "serve_counted.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ENQUEUED = task_pb2.TASK_STATUS_ENQUEUED
SUCCEEDED = task_pb2.TASK_STATUS_SUCCEEDED

# Published figures of queues on PostgreSQL, printed beside ours (their own machines and setups).
ANCHORS = [
    ("Graphile Worker", "~15.6k jobs/s unbatched, ~184k batched (one i9 box)"),
    ("River", "~46k jobs/s batched"),
    ("Oban", "~16.7k jobs/s"),
    ("PgQueuer", "6.4k-18k jobs/s"),
    ("Hatchet", "~2k runs/s on an 8-vCPU database"),
]


# -- CPU from /proc ---------------------------------------------------------------


def _stat_times(pid: int, children: bool = False) -> float:
    """utime + stime of a process (and its reaped children's, `children`), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the command: state is fields[0]; utime, stime, cutime, cstime are fields 11..14.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL cluster so far: the postmaster with its ended backends, and every live one.

    A backend that ends between two readings moves from the live sum into the postmaster's
    reaped children's times, so differences of this figure count it whole.
    """
    total = _stat_times(postmaster, children=True)
    try:
        live = psutil.Process(postmaster).children()
    except psutil.NoSuchProcess:
        return total
    return total + sum(_stat_times(child.pid) for child in live)


def wal_bytes(url: str | None) -> int:
    """Where the cluster's WAL stands, in bytes (0 without a cluster)."""
    if url is None:
        return 0
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        return int(row[0]) if row else 0


def postmaster_pid(cluster: postgres_cluster.Cluster) -> int:
    return int((cluster.folder / "data" / "postmaster.pid").read_text().split()[0])


# -- replicas -----------------------------------------------------------------------


class Setup:
    """One server (SQLite) or N replicas (PostgreSQL) of one run, with where their lock counters go."""

    def __init__(self, db: str, replicas: int, folder: Path, postgres: bool, env: dict[str, str] | None = None) -> None:
        self.servers: list[harness.Server] = []
        self.lock_files: list[Path] = []
        try:
            for i in range(replicas):
                if postgres:
                    out = folder / f"locks-{time.monotonic_ns()}-{i}.json"
                    self.lock_files.append(out)
                    locks = {"TASKHUB_BENCH_LOCK_TIMES": str(out)}
                    self.servers.append(harness.Server(db, launcher=LAUNCHER, env={**(env or {}), **locks}))
                else:
                    self.servers.append(harness.Server(db))
        except RuntimeError:
            self.stop()
            raise

    @property
    def targets(self) -> list[str]:
        return [server.target for server in self.servers]

    def cpu(self) -> list[float]:
        return [sum(psutil.Process(server.pid).cpu_times()[:2]) for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def locks(self) -> dict:
        """The replicas' lock counters as they last wrote them, summed (empty for SQLite)."""
        total: dict = {}
        for path in self.lock_files:
            if not path.exists():
                continue
            counters = json.loads(path.read_text())
            for key, value in counters.items():
                if isinstance(value, list):
                    total[key] = [a + b for a, b in zip(total.get(key, [0] * len(value)), value)]
                elif key.startswith("max_"):
                    total[key] = max(total.get(key, 0), value)
                else:
                    total[key] = total.get(key, 0) + value
        return total


def lock_delta(before: dict, after: dict) -> dict:
    """The counters of what ran between two readings (maxima: over the replicas' lives)."""
    if not after:
        return {}
    out = {}
    for key, value in after.items():
        if isinstance(value, list):
            out[key] = [b - a for a, b in zip(before.get(key, [0] * len(value)), value)]
        elif key.startswith("max_"):
            out[key] = value
        else:
            out[key] = value - before.get(key, 0)
    return out


def bucket_percentile(buckets: list[int], q: float) -> float:
    """The upper bound (ms) of the log2 bucket holding the q-th percentile."""
    count = sum(buckets)
    if not count:
        return 0.0
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= q / 100 * count:
            return (2**i) / 1000
    return (2 ** (len(buckets) - 1)) / 1000


# -- clients ------------------------------------------------------------------------


def counted_worker(target, name, done, leases, goal, deadline, cpu, ready) -> None:
    """end_to_end's worker, adding the CPU time it took (not its start's imports) to `cpu` as it ends."""
    start = time.process_time()
    end_to_end.taskhub_worker(target, name, done, leases, goal, deadline, ready)
    with cpu.get_lock():
        cpu.value += time.process_time() - start


def request(i: int, indexes: int) -> pb.EnqueueTaskRequest:
    one = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=f"index-{i % indexes}")
    one.details.document_addition_or_update.received_documents = 1
    return one


async def produce(targets: list[str], tasks: int, indexes: int, batch: int, producers: int = 64) -> None:
    """end_to_end's producers, spread over the replicas (producer j talks to replica j mod N)."""
    channels = [grpc.aio.insecure_channel(target) for target in targets]
    stubs = [task_service_pb2_grpc.TaskServiceStub(channel) for channel in channels]
    counter = iter(range(0, tasks, batch))

    async def producer(stub) -> None:
        for first in counter:
            if batch == 1:
                await stub.EnqueueTask(request(first, indexes), timeout=30)
            else:
                last = min(first + batch, tasks)
                await stub.EnqueueTasks(
                    pb.EnqueueTasksRequest(tasks=[request(i, indexes) for i in range(first, last)]), timeout=30
                )

    try:
        await asyncio.gather(*(producer(stubs[j % len(stubs)]) for j in range(producers)))
    finally:
        for channel in channels:
            await channel.close()


async def reads(target: str, tasks: int, seconds: float, concurrency: int) -> dict[str, tuple[float, float, float]]:
    """GetTask (random uids) and ListTasks (a page of 20, no filter and succeeded) on one replica."""
    rng = random.Random(7)
    out: dict[str, tuple[float, float, float]] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        succeeded = task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[SUCCEEDED]))
        calls = {
            "GetTask": (stub.GetTask, lambda: pb.GetTaskRequest(uid=rng.randrange(tasks))),
            "ListTasks": (stub.ListTasks, lambda: pb.ListTasksRequest(limit=20)),
            "ListTasks statuses=succeeded": (stub.ListTasks, lambda: pb.ListTasksRequest(filter=succeeded, limit=20)),
        }
        for name, (call, make) in calls.items():
            await harness.phase(call, make, min(0.3, seconds), concurrency)  # warm
            count, latencies = await harness.phase(call, make, seconds, concurrency)
            lat = harness.Latency(latencies)
            out[name] = (count / seconds, lat.p50, lat.p99)
    return out


async def notify_latency(a: str, b: str, seconds: float, rate: float) -> dict[str, float]:
    """Tasks enqueued through replica `a` at `rate`/s, seen by a WatchTasks watcher on replica `b`.

    Answers p50/p99 (ms) from the enqueue's answer (its commit is done) to the event on `b`,
    and from the call's start (an upper bound), and how many events never came.
    """
    sent: dict[int, tuple[float, float]] = {}
    seen: dict[int, float] = {}
    async with grpc.aio.insecure_channel(a) as channel_a, grpc.aio.insecure_channel(b) as channel_b:
        stub_a = task_service_pb2_grpc.TaskServiceStub(channel_a)
        watch = task_service_pb2_grpc.TaskServiceStub(channel_b).WatchTasks(pb.WatchTasksRequest())

        async def watcher() -> None:
            async for event in watch:
                if not event.deleted and event.task.status == ENQUEUED:
                    seen.setdefault(event.task.uid, time.perf_counter())

        watching = asyncio.create_task(watcher())
        await asyncio.sleep(0.5)  # the stream is open before the first enqueue

        async def send(i: int) -> None:
            t0 = time.perf_counter()
            answer = await stub_a.EnqueueTask(request(i, 16), timeout=10)
            sent[answer.task.task_uid] = (t0, time.perf_counter())

        pending, start, i = [], time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            pending.append(asyncio.create_task(send(i)))
            i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        await asyncio.gather(*pending)
        await asyncio.sleep(1.0)
        watch.cancel()
        watching.cancel()
    from_ack = [seen[uid] - acked for uid, (_, acked) in sent.items() if uid in seen]
    from_call = [seen[uid] - t0 for uid, (t0, _) in sent.items() if uid in seen]
    return {
        "ack_p50": harness.percentile(from_ack, 50) * 1000,
        "ack_p99": harness.percentile(from_ack, 99) * 1000,
        "call_p99": harness.percentile(from_call, 99) * 1000,
        "missed": len(sent) - len(from_ack),
        "sent": len(sent),
    }


# -- one run ------------------------------------------------------------------------


def run(
    name: str,
    db: str,
    replicas: int,
    batch: int,
    args,
    ctx,
    folder: Path,
    postmaster: int | None,
    last: bool,
    env: dict[str, str] | None = None,
    cluster_url: str | None = None,
):
    """One end-to-end run of one setup and batch size (and, `last`, its reads and NOTIFY); answers its figures."""
    setup = Setup(db, replicas, folder, postgres=name != "sqlite", env=env)
    try:
        targets = setup.targets
        deadline = time.time() + args.timeout
        done, leases = ctx.Value("i", 0), ctx.Value("i", 0, lock=False)
        client_cpu = ctx.Value("d", 0.0)
        workers = end_to_end.start_workers(
            ctx,
            counted_worker,
            lambda i: (targets[i % len(targets)], f"bench-{i}", done, leases, args.tasks, deadline, client_cpu),
            args.workers,
        )
        me = psutil.Process()
        time.sleep(0.1)  # the replicas' lock counters written since they started
        locks0 = setup.locks()
        wal0 = wal_bytes(cluster_url)
        cpu0, pg0, me0 = setup.cpu(), postgres_cpu(postmaster) if postmaster else 0.0, sum(me.cpu_times()[:2])
        t0 = time.perf_counter()
        asyncio.run(produce(targets, args.tasks, args.indexes, batch))
        t1 = end_to_end.wait_done(done, args.tasks, deadline, workers)
        cpu1, pg1, me1 = setup.cpu(), postgres_cpu(postmaster) if postmaster else 0.0, sum(me.cpu_times()[:2])
        wal1 = wal_bytes(cluster_url)
        time.sleep(0.1)
        locks1 = setup.locks()
        for worker in workers:
            worker.join(timeout=15)
        latencies, succeeded = end_to_end.finished_latencies(targets[0])
        figures: dict = {
            "tasks": done.value,
            "wall": t1 - t0,
            "rate": done.value / (t1 - t0),
            "p50": harness.Latency(latencies).p50,
            "p99": harness.Latency(latencies).p99,
            "replica_cpu": [b - a for a, b in zip(cpu0, cpu1)],
            "pg_cpu": pg1 - pg0,
            "client_cpu": client_cpu.value + (me1 - me0),
            "succeeded": succeeded,
            "per_lease": done.value / max(leases.value, 1),
            "locks": lock_delta(locks0, locks1),
            "wal": wal1 - wal0,
        }
        if last:
            figures["reads"] = asyncio.run(reads(targets[-1], args.tasks, args.read_seconds, args.read_concurrency))
            if len(targets) > 1:
                figures["notify"] = asyncio.run(
                    notify_latency(targets[0], targets[1], args.notify_seconds, args.notify_rate)
                )
    finally:
        setup.stop()
    return figures


# -- the report ---------------------------------------------------------------------


def cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    mid = statistics.median(values)
    if len(values) == 1:
        return format(mid, fmt)
    return f"{format(mid, fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def per_k(figures: dict, seconds: float) -> float:
    return 1000 * seconds / max(figures["tasks"], 1)


def rows_of(batch: int, runs: dict[str, list[dict]], names: list[str]) -> list[tuple[str, list[str]]]:
    """The table's rows for one batch size: (figure, a cell per setup)."""

    def col(fn, fmt: str) -> list[str]:
        return [cell([fn(f) for f in runs[name] if f is not None], fmt) for name in names]

    def locks(f: dict, key: str) -> float:
        lock = f["locks"]
        return lock.get(key, 0) if lock else float("nan")

    def lock_p(f: dict, kind: str, q: float) -> float:
        return bucket_percentile(f["locks"][f"{kind}_buckets"], q) if f["locks"] else float("nan")

    how = "EnqueueTask" if batch == 1 else f"EnqueueTasks of {batch}"
    return [
        (f"tasks/s [{how}]", col(lambda f: f["rate"], ",.0f")),
        ("enqueued -> finished p50 ms", col(lambda f: f["p50"], ",.0f")),
        ("enqueued -> finished p99 ms", col(lambda f: f["p99"], ",.0f")),
        ("taskhub CPU s / 1,000 tasks (all replicas)", col(lambda f: per_k(f, sum(f["replica_cpu"])), ".3f")),
        ("  busiest replica, % of a core", col(lambda f: 100 * max(f["replica_cpu"]) / f["wall"], ".0f")),
        ("PostgreSQL CPU s / 1,000 tasks", col(lambda f: per_k(f, f["pg_cpu"]), ".3f")),
        ("clients CPU s / 1,000 tasks", col(lambda f: per_k(f, f["client_cpu"]), ".3f")),
        (
            "machine busy, % of its cores",
            col(
                lambda f: 100 * (sum(f["replica_cpu"]) + f["pg_cpu"] + f["client_cpu"]) / f["wall"] / os.cpu_count(),
                ".0f",
            ),
        ),
        ("tasks per lease", col(lambda f: f["per_lease"], ".1f")),
        ("UNIT_LOCK units / 1,000 tasks", col(lambda f: per_k(f, locks(f, "units")), ".0f")),
        (
            "UNIT_LOCK wait mean ms (with the opening round trip)",
            col(lambda f: locks(f, "wait_ns") / max(locks(f, "units"), 1) / 1e6, ".3f"),
        ),
        ("UNIT_LOCK wait p99 ms (<=, with the opening)", col(lambda f: lock_p(f, "wait", 99), ".3f")),
        ("UNIT_LOCK hold mean ms", col(lambda f: locks(f, "hold_ns") / max(locks(f, "units"), 1) / 1e6, ".3f")),
        ("UNIT_LOCK hold p99 ms (<=)", col(lambda f: lock_p(f, "hold", 99), ".3f")),
        (
            "  of the hold, the end (counters, NOTIFY, COMMIT) mean ms",
            col(lambda f: locks(f, "commit_ns") / max(locks(f, "units"), 1) / 1e6, ".3f"),
        ),
        ("WAL KiB / 1,000 tasks", col(lambda f: per_k(f, f["wal"] / 1024), ",.0f")),
        ("UNIT_LOCK held, % of the run", col(lambda f: 100 * locks(f, "hold_ns") / 1e9 / f["wall"], ".0f")),
    ]


def report(args, names: list[str], results: dict[int, dict[str, list[dict]]], refused: dict[str, str]) -> int:
    print(
        f"\nend to end, {args.tasks:,} no-op tasks, {args.workers} worker processes, {args.rounds} round(s);"
        f" {os.cpu_count()} cores; PostgreSQL durable (fsync on, synchronous_commit on)",
        flush=True,
    )
    for name, why in refused.items():
        print(f"  {name}: not run ({why})", flush=True)
    names = [n for n in names if n not in refused]
    print("\n| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for batch, runs in results.items():
        for label, cells in rows_of(batch, runs, names):
            print(f"| {label} | " + " | ".join(cells) + " |")
    last = list(results)[-1]
    for what in ("GetTask", "ListTasks", "ListTasks statuses=succeeded"):
        for i, label in enumerate(("calls/s", "p50 ms", "p99 ms")):
            fmt = ",.0f" if i == 0 else ".2f"
            cells = [cell([f["reads"][what][i] for f in results[last][n] if "reads" in f], fmt) for n in names]
            print(f"| {what} {label} (one replica) | " + " | ".join(cells) + " |")
    for key, label in (
        ("ack_p50", "p50 ms"),
        ("ack_p99", "p99 ms"),
        ("call_p99", "p99 ms from the call"),
        ("missed", "events missed"),
    ):
        cells = [cell([f["notify"][key] for f in results[last][n] if "notify" in f], ".1f") for n in names]
        if any(c != "-" for c in cells):
            print(f"| WatchTasks on B, enqueued on A, {label} | " + " | ".join(cells) + " |")
    print(flush=True)

    def median(name: str, batch: int, fn) -> float:
        return statistics.median(fn(f) for f in results[batch][name]) if results[batch].get(name) else float("nan")

    for batch in results:
        how = "EnqueueTask" if batch == 1 else f"EnqueueTasks of {batch}"
        if "sqlite" in names and "pg1" in names:
            ratio = median("pg1", batch, lambda f: f["rate"]) / median("sqlite", batch, lambda f: f["rate"])
            harness.ratio_line(f"PostgreSQL 1 replica / SQLite tasks/s [{how}]", ratio, ">= 0.7", ratio >= 0.7)
        for name in names:
            if "@" in name:
                count, rev = name[2:].split("@")
                one = "pg1" if count == "1" else f"pg1@{rev}"
                if count == "1" and "pg1" not in names:
                    continue
                ratio = median(name, batch, lambda f: f["rate"]) / median(one, batch, lambda f: f["rate"])
                harness.figure(f"{name} / {one} tasks/s [{how}]", f"{ratio:.3f}")
            elif name.startswith("pg") and name != "pg1" and "pg1" in names:
                ratio = median(name, batch, lambda f: f["rate"]) / median("pg1", batch, lambda f: f["rate"])
                harness.figure(f"{name} / pg1 tasks/s [{how}]", f"{ratio:.3f}")
    for name in names:
        notify = [f["notify"]["ack_p99"] for f in results[last][name] if "notify" in f]
        if notify:
            p99 = statistics.median(notify)
            harness.target_line(f"NOTIFY p99 [{name}]", f"{p99:.1f} ms", "<= 100 ms", p99 <= 100)
    if "pg1" in names:
        project(args, results[last]["pg1"], last)
    print("\nPublished figures of other queues on PostgreSQL (their machines, not this one):")
    for queue, figure in ANCHORS:
        harness.figure(queue, figure)
    return 0


def project(args, runs: list[dict], batch: int) -> None:
    """Capacity of an 8-core database with enough replicas, from one replica's measured costs (medians)."""
    tasks = [f["tasks"] for f in runs]
    pg = statistics.median(f["pg_cpu"] / t for f, t in zip(runs, tasks))
    replica = statistics.median(sum(f["replica_cpu"]) / t for f, t in zip(runs, tasks))
    hold = statistics.median(f["locks"]["hold_ns"] / 1e9 / t for f, t in zip(runs, tasks))
    commit = statistics.median(f["locks"].get("commit_ns", 0) / 1e9 / t for f, t in zip(runs, tasks))
    cores = args.project_cores
    by_cpu = cores / pg
    by_lock = 1 / hold
    projected = min(by_cpu, by_lock)
    print(f"\nprojection [EnqueueTasks of {batch}], from pg1's medians:", flush=True)
    harness.figure("PostgreSQL CPU per task", f"{pg * 1e6:,.1f} us  -> {cores} cores: {by_cpu:,.0f} tasks/s")
    harness.figure("UNIT_LOCK held per task", f"{hold * 1e6:,.1f} us  -> one lock: {by_lock:,.0f} tasks/s")
    harness.figure(
        "  of it, the unit's end (COMMIT, its flush)",
        f"{commit * 1e6:,.1f} us  -> the lock with nothing but the ends in it: {1 / max(commit, 1e-9):,.0f} tasks/s",
    )
    harness.figure(
        "  if a unit held it only for PostgreSQL's work",
        f"{(pg + commit) * 1e6:,.1f} us (its CPU + the end)  -> {1 / (pg + commit):,.0f} tasks/s,"
        " an idle machine's bound for this design",
    )
    harness.figure(
        "  (units from every replica take the lock one at a time: more replicas or cores do not lift this bound)", ""
    )
    harness.figure(
        "replica CPU per task",
        f"{replica * 1e6:,.1f} us  -> {math.ceil(projected * replica):,} replica cores for {projected:,.0f} tasks/s",
    )
    harness.target_line(
        f"projected tasks/s, {cores}-core database",
        f"{projected:,.0f}",
        ">= 50,000",
        projected >= 50_000,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--indexes", type=int, default=16)
    parser.add_argument("--batch", default="1,100", help="tasks per enqueue call, comma-separated (1: EnqueueTask)")
    parser.add_argument("--replicas", default="1", help="PostgreSQL replica counts to run, comma-separated")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL setups only")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="give up on a run after this many seconds")
    parser.add_argument("--read-seconds", type=float, default=1.0, help="each read phase's length")
    parser.add_argument("--read-concurrency", type=int, default=16)
    parser.add_argument("--notify-seconds", type=float, default=3.0)
    parser.add_argument("--notify-rate", type=float, default=200.0, help="enqueues a second through replica A")
    parser.add_argument("--project-cores", type=int, default=8, help="the database machine of the projection")
    parser.add_argument(
        "--baseline",
        help="a git revision whose code also runs, as setups `pgN@REV` (N: each --replicas), beside this tree's",
    )
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    replicas = {f"pg{n}": n for n in (int(r) for r in args.replicas.split(","))}
    names = ([] if args.no_sqlite else ["sqlite"]) + list(replicas)
    envs: dict[str, dict[str, str]] = {}
    baseline_tree = None
    if args.baseline:
        baseline_tree = tempfile.mkdtemp(prefix="taskhub-baseline-")
        subprocess.run(
            ["git", "worktree", "add", "--detach", baseline_tree, args.baseline], cwd=harness.ROOT, check=True
        )
        paths = ":".join(f"{baseline_tree}/{part}" for part in ("client", "server", "gateway"))
        for count in list(replicas.values()):
            name = f"pg{count}@{args.baseline}"
            replicas[name] = count
            names.append(name)
            envs[name] = {"PYTHONPATH": paths}
    ctx = mp.get_context("spawn")

    cluster = postgres_cluster.start(durable=True)
    postmaster = postmaster_pid(cluster)
    results: dict[int, dict[str, list[dict]]] = {b: {n: [] for n in names} for b in batches}
    refused: dict[str, str] = {}
    made = iter(range(10**6))
    try:
        with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
            folder = Path(tmp)
            for round_ in range(args.rounds):
                order = names if round_ % 2 == 0 else names[::-1]
                for name in order:
                    for batch in batches:
                        if name in refused:
                            continue
                        n = next(made)
                        if name == "sqlite":
                            db, count, pm = str(folder / f"e2e-{n}.db"), 1, None
                        else:
                            db, count, pm = cluster.create_database(f"bench_{n}"), replicas[name], postmaster
                        try:
                            figures = run(
                                *(name, db, count, batch, args, ctx, folder, pm, batch == batches[-1]),
                                envs.get(name),
                                None if name == "sqlite" else cluster.url(),
                            )
                        except RuntimeError as exc:  # a replica refused to start
                            refused[name] = str(exc)
                            continue
                        results[batch][name].append(figures)
                        print(f"round {round_ + 1} {name} batch {batch}: {figures['rate']:,.0f} tasks/s", flush=True)
    finally:
        cluster.stop()
        if baseline_tree:
            subprocess.run(["git", "worktree", "remove", "--force", baseline_tree], cwd=harness.ROOT, check=False)
    return report(args, names, results, refused)


if __name__ == "__main__":
    sys.exit(main())
