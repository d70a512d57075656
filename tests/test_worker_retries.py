"""A `taskhub worker` subprocess whose handlers raise `Retry` and `TaskFailed(retry=True)` against a real server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # runs a server and a worker as subprocesses

HANDLERS = str(Path(__file__).with_name("retry_handlers.py"))
POLICY = json.dumps({"*": {"attempts": 3, "initialDelay": "100ms", "jitter": 0}})


def run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "taskhub.server.cli", *args, "--log-level", "ERROR"])


def test_a_worker_retries_as_its_handlers_ask_until_attempts_are_spent(tmp_path):
    port = free_port()
    target = f"127.0.0.1:{port}"
    server = run(
        "serve", "--db", str(tmp_path / "r.db"), "--no-http", "--grpc-listen", target, "--retry-policy", POLICY
    )
    channel = wait_serving(target)
    worker = run("worker", HANDLERS, "--target", target, "--poll-seconds", "0.5")
    try:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        addition = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="movies")
        addition.details.document_addition_or_update.received_documents = 3
        stub.EnqueueTask(addition, timeout=5)
        stub.EnqueueTask(pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="books"), timeout=5)
        deadline = time.monotonic() + 30
        while True:
            tasks = [stub.GetTask(pb.GetTaskRequest(uid=uid), timeout=5).task for uid in (0, 1)]
            if all(t.status in (task_pb2.TASK_STATUS_SUCCEEDED, task_pb2.TASK_STATUS_FAILED) for t in tasks):
                break
            assert time.monotonic() < deadline, f"not finished in time: {tasks}"
            time.sleep(0.05)
        documents, index = tasks
        # Two `Retry(after=0.2)`, then a success: 2 failed attempts, at least 0.2 s apart.
        assert documents.status == task_pb2.TASK_STATUS_SUCCEEDED and documents.attempts == 2
        assert documents.details.document_addition_or_update.indexed_documents == 3
        assert not documents.HasField("last_error") and not documents.HasField("error")
        took = documents.finished_at.ToMicroseconds() - documents.enqueued_at.ToMicroseconds()
        assert took >= 400_000
        # Three tries of three, each `TaskFailed(retry=True)`: it fails with the last error.
        assert index.status == task_pb2.TASK_STATUS_FAILED and index.attempts == 3
        assert (index.error.code, index.error.message) == ("disk_busy", "disk busy (attempt 3)")
    finally:
        channel.close()
        for proc in (worker, server):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
