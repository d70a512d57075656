"""Webhooks: what delivery costs the queue, and how soon finished tasks reach a healthy endpoint.

    .venv/bin/python bench/webhooks.py                 # 5,000 tasks
    .venv/bin/python bench/webhooks.py --tasks 50000

`taskhub serve` in a subprocess on a fresh database (with `--experimental-allowed-ip-networks
127.0.0.1/32`). This process enqueues `--tasks` tasks (EnqueueTasks of 100), then one worker leases
batches of 100 and completes them at once, timed from the first lease to the last completion.

Baseline, in the same run: the same on a server with no webhook. Candidate: a server with two webhooks,
one to a healthy endpoint in this process (answers 200 at once) and one to a silent endpoint (accepts,
never answers): every finished task goes to the outbox in its commit, and the silent one holds its own
delivery loop only. Figures: completions/s both ways and their ratio, and the lag from the last completion
to the healthy endpoint holding every task.

Target: completions/s with webhooks >= 0.9 of without.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc

import harness
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    webhook_service_pb2 as hpb,
    webhook_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)


class Endpoint:
    """An HTTP endpoint on 127.0.0.1: counts the tasks POSTed to it, or (`silent`) never answers."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.uids: set[int] = set()
        self.changed = asyncio.Event()

    async def start(self) -> str:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                if self.silent:
                    await asyncio.Event().wait()
                self.uids.update(json.loads(line)["uid"] for line in gzip.decompress(body).splitlines())
                self.changed.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


async def run(db: Path, tasks: int, healthy: Endpoint | None) -> tuple[float, float | None]:
    """Completions/s, and the delivery lag in seconds (None without an endpoint)."""
    server = harness.Server(db, "--experimental-allowed-ip-networks", "127.0.0.1/32")
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            if healthy is not None:
                hooks = webhook_service_pb2_grpc.WebhookServiceStub(channel)
                await hooks.CreateWebhook(hpb.CreateWebhookRequest(url=await healthy.start()))
                await hooks.CreateWebhook(hpb.CreateWebhookRequest(url=await Endpoint(silent=True).start()))
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="movies")
            request.details.document_addition_or_update.received_documents = 1
            for start in range(0, tasks, 100):
                await stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[request] * min(100, tasks - start)))
            workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
            done, began = 0, time.perf_counter()
            while done < tasks:
                lease = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="bench", max_tasks=100))
                outcomes = [wpb.TaskOutcome(uid=t.uid) for t in lease.tasks]
                await workers.CompleteTasks(wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=outcomes))
                done += len(outcomes)
            ended = time.perf_counter()
            lag = None
            if healthy is not None:
                while len(healthy.uids) < tasks:
                    healthy.changed.clear()
                    await asyncio.wait_for(healthy.changed.wait(), 60)
                lag = time.perf_counter() - ended
            return tasks / (ended - began), lag
    finally:
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5, help="baseline and candidate alternate; medians shown")
    args = parser.parse_args()
    bases, cands, lags = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for n in range(args.rounds):
            bases.append((await run(Path(folder) / f"base-{n}.db", args.tasks, None))[0])
            cand, lag = await run(Path(folder) / f"cand-{n}.db", args.tasks, Endpoint())
            cands.append(cand)
            lags.append(lag)
    base, cand, lag = statistics.median(bases), statistics.median(cands), statistics.median(lags)
    harness.figure("completions/s, no webhook", f"{base:,.0f} (rounds: {', '.join(f'{b:,.0f}' for b in bases)})")
    harness.figure(
        "completions/s, two webhooks (one silent)", f"{cand:,.0f} (rounds: {', '.join(f'{c:,.0f}' for c in cands)})"
    )
    harness.figure("last completion -> all delivered", f"{lag * 1000:,.0f} ms")
    harness.ratio_line("completions/s with webhooks / without", cand / base, ">= 0.9", cand / base >= 0.9)


if __name__ == "__main__":
    asyncio.run(main())
