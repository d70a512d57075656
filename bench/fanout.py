"""Watch fan-out: GetTask p99 under WatchTask streams + SSE clients + a producer, beside the same load without them.

    .venv/bin/python bench/fanout.py                                   # 1,000 streams, 200 SSE clients
    .venv/bin/python bench/fanout.py --streams 250 --sse 50 --seconds 5

`taskhub serve` (gRPC and its gateway, one process) runs in a subprocess. In both phases this
process calls GetTask at a fixed `--get-rate` (open loop: each call starts on schedule, so a
slow server shows as latency, not as fewer calls), a producer enqueues `--rate` tasks/s, and a
worker leases and releases the watched tasks (`--transitions`/s, 25 per index, rotating).
Phase 1 has no watchers. Phase 2 adds `--streams` WatchTask streams (on the cycled tasks)
and `--sse` clients of `GET /tasks/events` (every change), all held by a second process so
that their reading does not slow this one's GetTask timing; it is measured after `--settle`
seconds of the same load, as phase 1 is after a warm-up.

Printed: GetTask p50/p99 of each phase and their ratio (target <= 3), how many streams and
SSE clients were cut, and whether every SSE client got every change, gapless from the cursor
it was handed to the newest change.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil

import harness
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc, worker_service_pb2_grpc
from watchers import PER_INDEX, drive, enqueue_all

ID = re.compile(rb"(?:^|\n)id: (\d+)\n")
ERROR_CODE = re.compile(rb'event: error\ndata: \{.*?"code":"([a-z_]+)"')


class Serve(harness.Server):
    """harness.Server with the gateway on (it passes `--no-http`, which this drops)."""

    def __init__(self, db: Path, *extra: str) -> None:
        self.http_port = harness.free_port()
        self.port = harness.free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.workdir = tempfile.mkdtemp(prefix="taskhub-bench-")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskhub.server.cli",
                "serve",
                "--db",
                str(db),
                "--grpc-listen",
                self.target,
                "--http-listen",
                f"127.0.0.1:{self.http_port}",
                "--log-level",
                "WARNING",
                "--snapshots-dir",
                f"{self.workdir}/snapshots",
                "--dumps-dir",
                f"{self.workdir}/dumps",
                *extra,
            ]
        )
        self.wait_ready()


# -- the watchers' process -------------------------------------------------------------------


async def sse_client(port: int, found: dict, opened: asyncio.Event, total: int, counter: list) -> None:
    """One raw HTTP/1.0 `GET /tasks/events`: records the cursor it was handed, every id, and an error code."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /tasks/events HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    found.update(ids=[], error=None)
    buffer = b""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            buffer += chunk
            end = buffer.rfind(b"\n\n")
            if end < 0:
                continue
            whole, buffer = buffer[: end + 2], buffer[end + 2 :]
            ids = [int(m) for m in ID.findall(whole)]
            if "cursor" not in found and ids:
                found["cursor"], ids = ids[0], ids[1:]  # the id-only frame: where the watch starts
                counter[0] += 1
                if counter[0] == total:
                    opened.set()
            found["ids"] += ids
            error = ERROR_CODE.search(whole)
            if error:
                found["error"] = error.group(1).decode()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def follow(stub, uid: int, errors: dict, opened: list) -> None:
    try:
        async for _ in stub.WatchTask(pb.WatchTaskRequest(uid=uid)):
            if uid not in opened[1]:
                opened[1].add(uid)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            errors[error.code().name] = errors.get(error.code().name, 0) + 1
    except asyncio.CancelledError:
        pass


async def hold(target: str, http_port: int, streams: int, sse: int, channels: int, pipe) -> None:
    chans = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(channels)
    ]
    stubs = [task_service_pb2_grpc.TaskServiceStub(c) for c in chans]
    errors: dict = {}
    opened_streams: list = [0, set()]
    tasks = []
    for uid in range(streams):
        tasks.append(asyncio.create_task(follow(stubs[uid % channels], uid, errors, opened_streams)))
        if uid % 250 == 249:  # in waves, as bench/watchers.py does
            while len(opened_streams[1]) < uid + 1 - len(errors) and not errors:
                await asyncio.sleep(0.01)
    clients = [{} for _ in range(sse)]
    opened, counter = asyncio.Event(), [0]
    for found in clients:
        tasks.append(asyncio.create_task(sse_client(http_port, found, opened, sse, counter)))
    if sse:
        await asyncio.wait_for(opened.wait(), 120)
    while len(opened_streams[1]) < streams and not errors:
        await asyncio.sleep(0.05)
    pipe.send("open")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for chan in chans:
        await chan.close()
    pipe.send({"stream_errors": errors, "streams_opened": len(opened_streams[1]), "clients": clients})


def watchers_process(target: str, http_port: int, streams: int, sse: int, channels: int, pipe) -> None:
    asyncio.run(hold(target, http_port, streams, sse, channels, pipe))


# -- this process: GetTask timing, producer, worker ------------------------------------------


async def get_load(stub, rate: float, seconds: float, uids: int) -> list[float]:
    latencies: list[float] = []
    pending = set()

    async def one(uid: int) -> None:
        t0 = time.perf_counter()
        await stub.GetTask(pb.GetTaskRequest(uid=uid), timeout=30)
        latencies.append(time.perf_counter() - t0)

    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        pending.add(asyncio.ensure_future(one(n % uids)))
        n += 1
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*pending)
    return latencies


async def producer(stub, rate: float, seconds: float) -> int:
    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="produced")
        request.details.document_addition_or_update.received_documents = 1
        await stub.EnqueueTask(request, timeout=30)
        n += 1
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return n


async def phase(stub, workers, args, indexes: int) -> tuple[list[float], int, int, float]:
    """GetTask latencies, tasks produced, transitions driven, and the server's CPU (share of one core)."""
    server = psutil.Process(args.server_pid)
    cpu, t0 = sum(server.cpu_times()[:2]), time.monotonic()
    latencies, produced, transitions = await asyncio.gather(
        get_load(stub, args.get_rate, args.seconds, args.streams),
        producer(stub, args.rate, args.seconds),
        drive(workers, indexes, args.transitions, args.seconds) if args.transitions else asyncio.sleep(0, 0),
    )
    return latencies, produced, transitions, (sum(server.cpu_times()[:2]) - cpu) / (time.monotonic() - t0)


async def run(server: Serve, args) -> dict:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        await enqueue_all(stub, args.streams)
        indexes = args.streams // PER_INDEX
        await phase(stub, workers, dict_args(args, seconds=1.0), indexes)  # warm-up, unmeasured
        base = await phase(stub, workers, args, indexes)

        ours, theirs = multiprocessing.Pipe()
        holder = multiprocessing.get_context("spawn").Process(
            target=watchers_process,
            args=(server.target, server.http_port, args.streams, args.sse, args.channels, theirs),
        )
        holder.start()
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, ours.recv) == "open"
        open_seconds = time.monotonic() - t0
        # Opening 1,200 streams leaves their objects for the garbage collector's full passes, each a
        # pause of the whole server: measure the steady state after them, as the baseline is measured.
        await phase(stub, workers, dict_args(args, seconds=args.settle), indexes)
        loaded = await phase(stub, workers, args, indexes)
        await asyncio.sleep(2.0)  # the last changes reach every client
        ours.send("stop")
        held = await loop.run_in_executor(None, ours.recv)
        holder.join()
    return {"base": base, "loaded": loaded, "held": held, "open_seconds": open_seconds}


def dict_args(args, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1_000, help="WatchTask streams (rounded down to 25s)")
    parser.add_argument("--sse", type=int, default=200, help="SSE clients of GET /tasks/events")
    parser.add_argument("--rate", type=float, default=20, help="tasks enqueued per second by the producer")
    parser.add_argument("--transitions", type=float, default=50, help="watched tasks' transitions per second")
    parser.add_argument("--get-rate", type=float, default=200, help="GetTask calls per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--channels", type=int, default=8, help="connections the WatchTask streams spread over")
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds of the same load, unmeasured, between opening the watchers and measuring",
    )
    args = parser.parse_args()
    args.streams = max(PER_INDEX, args.streams // PER_INDEX * PER_INDEX)

    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        with Serve(Path(tmp) / "fanout.db", "--max-watchers-per-client", str(max(500, args.sse))) as server:
            args.server_pid = server.pid
            result = asyncio.run(run(server, args))

    base, loaded = harness.Latency(result["base"][0]), harness.Latency(result["loaded"][0])
    held = result["held"]
    print(
        f"Fan-out: {args.streams:,} WatchTask streams + {args.sse} SSE clients, producer {args.rate:g} tasks/s,"
        f" {args.transitions:g} transitions/s, GetTask {args.get_rate:g}/s, {args.seconds:g}s per phase",
        flush=True,
    )
    harness.machine_noise()
    harness.figure("GetTask without watchers", str(base))
    harness.figure("GetTask with watchers", str(loaded))
    harness.figure("server CPU (cores)", f"{result['base'][3]:.2f} without, {result['loaded'][3]:.2f} with")
    harness.figure(
        "changes per phase",
        f"{result['base'][1] + result['base'][2]:,} without, {result['loaded'][1] + result['loaded'][2]:,} with",
    )
    harness.figure("opening", f"{held['streams_opened']:,} streams + {args.sse} SSE in {result['open_seconds']:.1f}s")
    clients = held["clients"]
    newest = max((c["ids"][-1] for c in clients if c.get("ids")), default=None)
    cut = sum(1 for c in clients if c.get("error"))
    complete = sum(1 for c in clients if "cursor" in c and c["ids"] == list(range(c["cursor"] + 1, newest + 1)))
    errors = sorted({c["error"] for c in clients if c.get("error")})
    harness.figure(
        "SSE clients cut",
        f"{cut} of {len(clients)}{' (' + ', '.join(errors) + ')' if errors else ''};"
        f" WatchTask streams cut: {held['stream_errors'] or 'none'}",
    )
    harness.figure("SSE clients with every change", f"{complete} of {len(clients)} (gapless up to sequence {newest})")
    ratio = loaded.p99 / base.p99 if base.p99 else float("inf")
    harness.ratio_line("GetTask p99 with/without watchers", ratio, "<= 3", ratio <= 3)
    harness.target_line(
        "SSE clients with every change",
        f"{complete}/{len(clients)}",
        "all",
        complete == len(clients) and not held["stream_errors"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
