"""What tracing costs the server: enqueue calls/s and lease+complete tasks/s, untraced and traced over OTLP.

    .venv/bin/python bench/tracing.py                         # 3 rounds of 2 s each way
    .venv/bin/python bench/tracing.py --seconds 5 --rounds 5

Each round starts `taskhub serve` twice on a fresh database, untraced and with `OTEL_TRACES_EXPORTER=otlp`
(the `otel` extra), in alternating order. The traced server exports to an OTLP collector run here (a gRPC
`TraceService` that counts the spans it receives), so the cost includes the real export. Per server:
`--producers` concurrent callers enqueue with EnqueueTask for `--seconds` (each task carries the caller's
trace context: the server stores it), then two lessors lease batches of up to 100 and report them until
none is left (each lease and report adds a span per task). The figures are the medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent import futures
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

try:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp, trace_service_pb2_grpc as otlp_grpc
except ImportError:
    sys.exit("bench/tracing.py needs the `otel` extra: pip install -e '.[otel]'")


class Collector(otlp_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace endpoint that only counts spans."""

    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()

    def Export(self, request, context):
        count = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self.lock:
            self.spans += count
        return otlp.ExportTraceServiceResponse()


async def workload(target: str, seconds: float, producers: int) -> tuple[float, float, int]:
    """(enqueue calls/s, lease+complete tasks/s, tasks) against the server at `target`."""
    async with grpc.aio.insecure_channel(target) as channel:
        tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)

        def request() -> pb.EnqueueTaskRequest:
            message = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="books")
            message.details.document_addition_or_update.received_documents = 1
            return message

        enqueued, _ = await harness.phase(tasks.EnqueueTask, request, seconds, producers)
        enqueue_rate = enqueued / seconds
        done = 0
        started = time.perf_counter()

        async def lessor() -> None:
            nonlocal done
            while True:
                lease = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="bench", max_tasks=100), timeout=10)
                if not lease.HasField("lease"):
                    return
                outcomes = [wpb.TaskOutcome(uid=t.uid) for t in lease.tasks]
                await workers.CompleteTasks(
                    wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=outcomes), timeout=10
                )
                done += len(outcomes)

        # One index: batches come one at a time, so a second lessor mostly finds none; it stops when none is left.
        await asyncio.gather(lessor(), lessor())
        return enqueue_rate, done / (time.perf_counter() - started), enqueued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="enqueue phase per server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--producers", type=int, default=16, help="concurrent enqueue callers")
    args = parser.parse_args()

    collector = Collector()
    sink = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    otlp_grpc.add_TraceServiceServicer_to_server(collector, sink)
    port = sink.add_insecure_port("127.0.0.1:0")
    sink.start()
    traced_env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
    }
    results: dict[str, list[tuple[float, float, int]]] = {"untraced": [], "traced": []}
    spans_per_task: list[float] = []
    print(f"tracing: {args.rounds} rounds, {args.seconds:g} s of enqueues from {args.producers} callers per server")
    for round_ in range(args.rounds):
        order = ("untraced", "traced") if round_ % 2 == 0 else ("traced", "untraced")
        for mode in order:
            saved = dict(os.environ)
            if mode == "traced":
                os.environ.update(traced_env)
            else:
                for name in traced_env:
                    os.environ.pop(name, None)
            try:
                with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
                    before = collector.spans
                    with harness.Server(Path(tmp) / "t.db") as server:
                        results[mode].append(asyncio.run(workload(server.target, args.seconds, args.producers)))
                    if mode == "traced":  # the server flushed its spans on its way out
                        spans_per_task.append((collector.spans - before) / max(results[mode][-1][2], 1))
            finally:
                os.environ.clear()
                os.environ.update(saved)
    sink.stop(0)

    medians = {
        mode: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
        for mode, rows in results.items()
    }
    for mode, (enqueue_rate, drain_rate) in medians.items():
        harness.figure(f"{mode}", f"enqueue {enqueue_rate:8,.0f} calls/s   lease+complete {drain_rate:8,.0f} tasks/s")
    harness.figure("spans exported per task (traced)", f"{statistics.median(spans_per_task):.2f}")
    harness.ratio_line(
        "traced/untraced enqueue calls/s", medians["traced"][0] / medians["untraced"][0], "figure only", True
    )
    harness.ratio_line(
        "traced/untraced lease+complete tasks/s", medians["traced"][1] / medians["untraced"][1], "figure only", True
    )


if __name__ == "__main__":
    main()
