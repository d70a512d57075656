"""One trace from enqueue to completion: the gateway's request, the gRPC calls, the lease, the worker's handler
(in a `taskhub worker` subprocess, exporting its spans to a file) and the report.

The server and gateway run here with the SDK's in-memory exporter; the worker's spans join their trace only
through the trace context the server stored with the task and handed over with the lease.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskhub.client import tracing
from taskhub.server import app
from taskhub.v1 import task_pb2, task_service_pb2 as pb, worker_service_pb2 as wpb
from taskhub.v1.task_service_pb2_grpc import TaskServiceStub
from taskhub.v1.worker_service_pb2_grpc import WorkerServiceStub
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # a worker subprocess

HANDLERS = str(Path(__file__).with_name("trace_handlers.py"))
MASTER = "master-key-of-the-trace-tests-0123456789"
WORKER_HANDLERS = str(Path(__file__).with_name("worker_handlers.py"))


@pytest.fixture
def exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(provider, server=True)  # before the server and its gateway make their gRPC objects
    yield exporter
    tracing.stop()


def hex_id(value: int, width: int) -> str:
    return f"0x{value:0{width}x}"


def exported(path: Path) -> list[dict]:
    """The spans the console exporter wrote: JSON objects one after another."""
    text, spans, decoder, at = path.read_text(), [], json.JSONDecoder(), 0
    while (at := text.find("{", at)) != -1:
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
    return spans


async def test_one_trace_from_the_gateway_to_the_workers_handler_and_back(exporter, config, tmp_path):
    config = dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0", master_key=MASTER)
    service = await app.start(config)
    worker_out = tmp_path / "worker-spans.json"
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "trace-test-worker",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    worker = None
    try:
        base = f"http://127.0.0.1:{service.gateway.port}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {MASTER}"}) as http:
            enqueued = await http.post(
                "/tasks",
                json={"type": "documentAdditionOrUpdate", "indexUid": "books", "details": {"receivedDocuments": 3}},
            )
            assert enqueued.status_code == 202, enqueued.text
            uid = enqueued.json()["taskUid"]
            with worker_out.open("wb") as out:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "taskhub.server.cli", "worker", HANDLERS, "--target",
                     service.grpc_target, "--poll-seconds", "0.5", "--api-key", MASTER],
                    stdout=out,
                    env=env,
                )  # fmt: skip
            deadline = time.monotonic() + 30
            while (task := (await http.get(f"/tasks/{uid}")).json())["status"] != "succeeded":
                assert worker.poll() is None and time.monotonic() < deadline, task
                await asyncio.sleep(0.1)
            # The context is stored with the task, never shown in its JSON.
            assert "traceparent" not in json.dumps(task) and "traceContext" not in json.dumps(task)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)  # its spans are flushed at exit
            # Waited for without blocking the loop: the server here answers its last calls.
            deadline = time.monotonic() + 30
            while worker.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert worker.poll() == 0
        await service.stop(0)

    spans = exporter.get_finished_spans()
    request = next(s for s in spans if s.name == "POST /tasks" and s.parent is None)
    trace_id = request.context.trace_id
    ours = [s for s in spans if s.context.trace_id == trace_id]
    by_name = {s.name: s for s in ours}
    enqueue_server = next(
        s for s in ours if s.name == "/taskhub.v1.TaskService/EnqueueTask" and s.kind.name == "SERVER"
    )
    enqueue_client = next(
        s for s in ours if s.name == "/taskhub.v1.TaskService/EnqueueTask" and s.kind.name == "CLIENT"
    )
    # gateway request -> its gRPC call -> the server's span, whose context the task carries.
    assert enqueue_client.parent.span_id in {s.context.span_id for s in ours if s.name.startswith("POST /tasks")}
    assert enqueue_server.parent.span_id == enqueue_client.context.span_id
    lease, complete = by_name["taskhub lease"], by_name["taskhub complete"]
    for span in (lease, complete):
        assert span.parent.span_id == enqueue_server.context.span_id
        assert span.attributes["taskhub.task.uid"] == uid
    assert complete.attributes["taskhub.status"] == "succeeded"
    assert lease.attributes["taskhub.worker"].endswith(f":{worker.pid}")

    worker_spans = exported(worker_out)
    # No credential in a span: the instrumentations record no authorization header.
    assert MASTER not in worker_out.read_text()
    assert not [s for s in spans if MASTER in json.dumps(dict(s.attributes or {}), default=str)]
    handler = next(s for s in worker_spans if s["name"] == "taskhub handle documentAdditionOrUpdate")
    assert handler["context"]["trace_id"] == hex_id(trace_id, 32)
    assert handler["parent_id"] == hex_id(enqueue_server.context.span_id, 16)
    assert handler["attributes"]["taskhub.task.uid"] == uid
    assert handler["resource"]["attributes"]["service.name"] == "trace-test-worker"
    inner = next(s for s in worker_spans if s["name"] == "index the documents")
    assert inner["parent_id"] == handler["context"]["span_id"]
    # The report is made within the task's trace, so the server's span of it joins too.
    report = next(
        s
        for s in worker_spans
        if s["name"] == "/taskhub.v1.WorkerService/CompleteTasks" and s["kind"] == "SpanKind.CLIENT"
    )
    assert report["context"]["trace_id"] == hex_id(trace_id, 32)
    served = next(s for s in ours if s.name == "/taskhub.v1.WorkerService/CompleteTasks")
    assert hex_id(served.parent.span_id, 16) == report["context"]["span_id"]
    # The worker's lease calls are traces of their own: nothing but the stored context joined them.
    leases = [s for s in worker_spans if s["name"] == "/taskhub.v1.WorkerService/LeaseTasks"]
    assert leases and all(s["context"]["trace_id"] != hex_id(trace_id, 32) for s in leases)


BLOCKER = """
import sys


class NotInstalled:
    # As if the `otel` extra were not installed: every opentelemetry module is missing.
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""


def test_without_the_extra_everything_works_untraced_and_says_so(tmp_path):
    """OTEL_TRACES_EXPORTER set, OpenTelemetry missing: serve (with its gateway) and a worker run a task as
    ever, each warning once that tracing needs the extra."""
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "blocker"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OTEL_TRACES_EXPORTER": "console",
        "TASKHUB_TEST_LOG": str(tmp_path / "runs.jsonl"),
    }
    blocked = subprocess.run([sys.executable, "-c", "import opentelemetry"], env=env, capture_output=True, text=True)
    assert "No module named 'opentelemetry'" in blocked.stderr  # the blocker works
    probe = subprocess.run(
        [sys.executable, "-c", "import taskhub.client.worker, taskhub.gateway.tracing, taskhub.server.edge.tracing;"
         " from taskhub.client import tracing; print(tracing.available(), tracing.start('probe'))"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert (probe.returncode, probe.stdout) == (0, "False False\n"), probe.stderr
    grpc_port, http_port = free_port(), free_port()
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("serve", "worker", "worker-out")}
    server = subprocess.Popen(
        [sys.executable, "-m", "taskhub.server.cli", "serve", "--db", str(tmp_path / "t.db"), "--grpc-listen",
         f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}"],
        env=env, stderr=logs["serve"],
    )  # fmt: skip
    worker = None
    try:
        wait_serving(f"127.0.0.1:{grpc_port}").close()
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskhub.server.cli", "worker", WORKER_HANDLERS, "--target",
             f"127.0.0.1:{grpc_port}", "--poll-seconds", "0.5"],
            env=env, stderr=logs["worker"], stdout=logs["worker-out"],
        )  # fmt: skip
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}") as http:
            deadline = time.monotonic() + 20
            while True:  # the gateway starts just after gRPC
                try:
                    enqueued = http.post("/tasks", json={"type": "indexCreation", "indexUid": "books"})
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert enqueued.status_code == 202, enqueued.text
            uid = enqueued.json()["taskUid"]
            while (task := http.get(f"/tasks/{uid}").json())["status"] != "succeeded":
                assert worker.poll() is None and time.monotonic() < deadline, task
                time.sleep(0.1)
    finally:
        for proc in (worker, server):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
        for file in logs.values():
            file.close()
    for name in ("serve", "worker"):
        text = (tmp_path / f"{name}.log").read_text()
        assert text.count("OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed") == 1, text
        assert "Traceback" not in text
    assert (tmp_path / "worker-out.log").read_text() == ""  # no span was exported


async def test_the_context_is_the_first_enqueuers_and_no_part_of_an_idempotent_request(exporter, config):
    service = await app.start(config, background=False)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            tasks, workers = TaskServiceStub(channel), WorkerServiceStub(channel)
            tracer = tracing.provider().get_tracer("test")
            traces, uids = [], []
            for caller in ("first", "second"):
                with tracer.start_as_current_span(f"{caller} caller") as span:
                    request = pb.EnqueueTaskRequest(
                        type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="movies", idempotency_key="once"
                    )
                    uids.append((await tasks.EnqueueTask(request)).task.task_uid)
                    traces.append(span.get_span_context().trace_id)
            # The same request from another trace is the same request: no idempotency_key_conflict.
            assert uids[0] == uids[1] and traces[0] != traces[1]
            leased = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w"))
            assert [t.uid for t in leased.tasks] == [uids[0]]
            version, trace_id, _, flags = leased.tasks[0].trace_context["traceparent"].split("-")
            assert (version, trace_id, int(flags, 16) & 1) == ("00", f"{traces[0]:032x}", 1)  # and sampled
            # Failed and requeued, the task's new run stays in the first trace.
            failed = wpb.TaskOutcome(uid=uids[0])
            failed.error.code, failed.error.message, failed.error.type = "broken", "it broke", "internal"
            await workers.CompleteTasks(wpb.CompleteTasksRequest(token=leased.lease.token, outcomes=[failed]))
            requeue = pb.RequeueTasksRequest()
            requeue.filter.uids.uids.append(uids[0])
            [again] = (await tasks.RequeueTasks(requeue)).tasks
            leased = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w"))
            assert [t.uid for t in leased.tasks] == [again.uid] and again.requeued_from == uids[0]
            assert leased.tasks[0].trace_context["traceparent"].split("-")[1] == f"{traces[0]:032x}"

            tracing.stop()  # untraced from here: nothing stored, nothing handed over
            with tracer.start_as_current_span("untraced caller"):
                await tasks.EnqueueTask(pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="b"))
            leased = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w"))
            assert len(leased.tasks) == 1 and dict(leased.tasks[0].trace_context) == {}
    finally:
        await service.stop(0)
