"""10,000 concurrent WatchTask streams: commit-to-delivery latency at 500 transitions/s, and server RSS.

    .venv/bin/python bench/watchers.py                        # 1,000 streams, 5 s per phase
    .venv/bin/python bench/watchers.py --watchers 10000 --seconds 15

`taskhub serve` runs in a subprocess; this process enqueues `--watchers` tasks, 25 per
index, opens one WatchTask stream per task (over `--channels` connections, `--wave` at a
time), and drives `--rate` transitions/s: every 100 ms it leases one index's 25 tasks
(enqueued -> processing) and releases them (processing -> enqueued), rotating over the
indexes, so every stream stays open for the whole run.

Latency is measured on the processing transitions: receive time here minus the task's
`startedAt`, which the server takes just before the transaction commits (so it is an
upper bound of commit-to-delivery; same machine, same clock). The released (enqueued)
transitions carry no timestamp; they are counted, not timed.

Baseline in the same run: the same rate driven on 4 indexes (100 streams) first, then
the full set. Targets: p99 <= 100 ms with all streams, server RSS <= 1 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
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

PER_INDEX = 25
PROCESSING = task_pb2.TASK_STATUS_PROCESSING


class Watchers:
    """The open streams and what they received."""

    def __init__(self) -> None:
        self.opened = 0
        self.latencies: list[float] = []
        self.received = 0
        self.errors: dict[str, int] = {}
        self.calls: list = []

    async def follow(self, stub, uid: int) -> None:
        call = stub.WatchTask(pb.WatchTaskRequest(uid=uid))
        self.calls.append(call)
        first = True
        try:
            async for message in call:
                if first:
                    first = False
                    self.opened += 1
                    continue
                self.received += 1
                if message.task.status == PROCESSING:
                    self.latencies.append(time.time() - message.task.started_at.ToMicroseconds() / 1e6)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.errors[error.code().name] = self.errors.get(error.code().name, 0) + 1
        except asyncio.CancelledError:
            pass

    def cancel(self) -> None:
        for call in self.calls:
            call.cancel()

    def reset(self) -> None:
        self.latencies, self.received = [], 0


async def enqueue_all(stub, count: int) -> None:
    counter = iter(range(count))

    async def producer() -> None:
        for i in counter:
            request = pb.EnqueueTaskRequest(
                type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=f"w-{i // PER_INDEX}"
            )
            request.details.document_addition_or_update.received_documents = 1
            await stub.EnqueueTask(request, timeout=30)

    await asyncio.gather(*(producer() for _ in range(64)))


async def drive(workers, indexes: int, rate: float, seconds: float) -> int:
    """Lease + release one index's batch per tick, rotating; answers the transitions committed."""
    per_tick = 2 * PER_INDEX
    tick = per_tick / rate
    transitions, i = 0, 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        next_tick = start + (transitions // per_tick + 1) * tick
        lease = await workers.LeaseTasks(
            wpb.LeaseTasksRequest(
                worker="bench", index_uids=task_pb2.IndexUidSet(index_uids=[f"w-{i % indexes}"]), max_tasks=PER_INDEX
            ),
            timeout=10,
        )
        i += 1
        if lease.HasField("lease"):
            await workers.ReleaseLease(wpb.ReleaseLeaseRequest(token=lease.lease.token), timeout=10)
            transitions += 2 * len(lease.tasks)
        delay = next_tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return transitions


async def phase(name: str, watchers: Watchers, workers, indexes: int, args, server_pid: int) -> dict:
    watchers.reset()
    peak = harness.rss_mib(server_pid)
    sampler_stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not sampler_stop.is_set():
            peak = max(peak, harness.rss_mib(server_pid))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    transitions = await drive(workers, indexes, args.rate, args.seconds)
    elapsed = time.monotonic() - t0
    await asyncio.sleep(1.0)  # let the last deliveries land
    sampler_stop.set()
    await sampler
    return {
        "name": name,
        "rate": transitions / elapsed,
        "transitions": transitions,
        "received": watchers.received,
        "latency": harness.Latency(list(watchers.latencies)),
        "peak_rss": peak,
    }


async def run(target: str, server_pid: int, args) -> tuple[list[dict], dict]:
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(args.channels)
    ]
    stubs = [task_service_pb2_grpc.TaskServiceStub(c) for c in channels]
    workers = worker_service_pb2_grpc.WorkerServiceStub(channels[0])
    figures = {"rss_empty": harness.rss_mib(server_pid)}
    await enqueue_all(stubs[0], args.watchers)
    indexes = args.watchers // PER_INDEX
    figures["rss_enqueued"] = harness.rss_mib(server_pid)

    watchers = Watchers()
    results = []
    base_indexes = min(4, indexes)
    streams = [asyncio.create_task(watchers.follow(stubs[0], uid)) for uid in range(base_indexes * PER_INDEX)]
    while watchers.opened < len(streams) and not watchers.errors:
        await asyncio.sleep(0.05)
    results.append(await phase(f"{len(streams)} streams (baseline)", watchers, workers, base_indexes, args, server_pid))

    t0 = time.monotonic()
    wave = args.wave or args.watchers
    for uid in range(base_indexes * PER_INDEX, indexes * PER_INDEX):
        streams.append(asyncio.create_task(watchers.follow(stubs[uid % len(stubs)], uid)))
        if len(streams) % wave == 0:
            # A burst of thousands of new streams stalls grpc.aio's server (see --wave): open in waves.
            while watchers.opened < len(streams) and time.monotonic() - t0 < args.open_timeout:
                await asyncio.sleep(0.01)
    while watchers.opened < len(streams) and time.monotonic() - t0 < args.open_timeout and not watchers.errors:
        await asyncio.sleep(0.1)
    figures["open_seconds"] = time.monotonic() - t0
    figures["opened"] = watchers.opened
    figures["rss_open"] = harness.rss_mib(server_pid)
    results.append(await phase(f"{watchers.opened:,} streams", watchers, workers, indexes, args, server_pid))

    watchers.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    await asyncio.sleep(2.0)
    figures["rss_closed"] = harness.rss_mib(server_pid)
    figures["errors"] = dict(watchers.errors)
    for channel in channels:
        await channel.close()
    return results, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=1_000, help="streams (rounded down to 25 per index)")
    parser.add_argument("--rate", type=float, default=500, help="transitions per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--channels", type=int, default=8, help="client connections the streams spread over")
    parser.add_argument("--open-timeout", type=float, default=120.0)
    parser.add_argument(
        "--wave",
        type=int,
        default=250,
        help="open streams this many at a time, each wave once the last is open; 0: all at once"
        " (on grpcio 1.85 a burst of a few thousand stalls the server's new streams)",
    )
    args = parser.parse_args()
    args.watchers = max(PER_INDEX, args.watchers // PER_INDEX * PER_INDEX)

    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        with harness.Server(Path(tmp) / "watch.db", "--max-watchers", str(max(20_000, 2 * args.watchers))) as server:
            results, figures = asyncio.run(run(server.target, server.pid, args))

    print(f"WatchTask streams at {args.rate:g} transitions/s, {args.seconds:g}s per phase", flush=True)
    harness.figure(
        "streams opened",
        f"{figures['opened']:,} of {args.watchers:,} in {figures['open_seconds']:.1f}s"
        f"  errors {figures['errors'] or 'none'}",
    )
    for r in results:
        harness.figure(
            r["name"], f"{r['rate']:6.0f} transitions/s driven, {r['received']:,} of {r['transitions']:,} delivered"
        )
        harness.figure("  commit -> delivery (processing)", str(r["latency"]))
        harness.figure("  server RSS peak", f"{r['peak_rss']:.0f} MiB")
    harness.figure(
        "server RSS",
        f"empty {figures['rss_empty']:.0f} MiB, tasks enqueued {figures['rss_enqueued']:.0f},"
        f" streams open {figures['rss_open']:.0f}, streams closed {figures['rss_closed']:.0f}",
    )
    base, full = results
    ratio = full["latency"].p99 / base["latency"].p99 if base["latency"].p99 else float("inf")
    harness.ratio_line("p99 all streams/baseline", ratio, "(information)", True)
    harness.target_line(
        "commit -> delivery p99", f"{full['latency'].p99:.1f} ms", "<= 100 ms", full["latency"].p99 <= 100
    )
    harness.target_line(
        "driven rate", f"{full['rate']:.0f}/s", f">= {0.95 * args.rate:.0f}/s", full["rate"] >= 0.95 * args.rate
    )
    peak = max(r["peak_rss"] for r in results)
    harness.target_line("server RSS peak", f"{peak:.0f} MiB", "<= 1024 MiB", peak <= 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
