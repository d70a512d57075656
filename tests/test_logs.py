"""What `taskhub serve` and `taskhub worker` log, read from the real processes' stderr: the events an operator
needs (failures, lease expiry, attempts exhausted, cleanup, queue full, the worker's batches and missing
handlers), in JSON lines of one shape, and never a secret (the master key, lease tokens)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # server and worker subprocesses

MASTER = "master-key-of-the-log-tests-0123456789"
AUTH = (("authorization", f"Bearer {MASTER}"),)
HANDLERS = str(Path(__file__).with_name("log_handlers.py"))
FAIL, HANG = 13, 99


class Logged:
    """A `taskhub` subprocess whose stderr goes to a file, read as it grows."""

    def __init__(self, path: Path, *args: str) -> None:
        self.path = path
        self.file = path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "taskhub.server.cli", *args], stderr=self.file)

    def lines(self) -> list[str]:
        return [line for line in self.path.read_text().splitlines() if line.strip()]

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]

    def wait_for(self, event: str, timeout: float = 30, **fields) -> dict:
        """The first logged `event` with these fields, waiting for it; fails if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            for record in self.events():
                if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
                    return record
            assert self.proc.poll() is None, f"{self.path.name}: the process ended before logging {event} {fields}"
            assert time.monotonic() < deadline, f"{self.path.name}: no {event} {fields} in {self.lines()}"
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.file.close()


def serve(tmp_path: Path, *flags: str) -> tuple[Logged, str]:
    port = free_port()
    server = Logged(
        tmp_path / "serve.log",
        "serve",
        "--db",
        str(tmp_path / "logs.db"),
        "--no-http",
        "--grpc-listen",
        f"127.0.0.1:{port}",
        *flags,
    )
    wait_serving(f"127.0.0.1:{port}").close()
    return server, f"127.0.0.1:{port}"


def documents(stub, index: str, received: int) -> int:
    request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=index)
    request.details.document_addition_or_update.received_documents = received
    return stub.EnqueueTask(request, metadata=AUTH, timeout=5).task.task_uid


def test_server_and_worker_log_each_event_as_json_and_no_secret(tmp_path):
    server, target = serve(
        tmp_path,
        "--master-key",
        MASTER,
        "--max-attempts",
        "1",
        "--retry-policy",
        '{"settingsUpdate": {"attempts": 2, "initialDelay": "0s", "jitter": 0}}',
        "--cleanup-threshold",
        "6",
        "--cleanup-batch",
        "2",
        "--log-format",
        "json",
    )
    worker = None
    try:
        with grpc.insecure_channel(target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            blocker = stub.EnqueueTask(
                pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="blocked"),
                metadata=AUTH,
                timeout=5,
            ).task.task_uid
            documents(stub, "blocked", 5)
            fine, failing = documents(stub, "a", 1), documents(stub, "b", FAIL)
            worker = Logged(
                tmp_path / "worker.log",
                "worker",
                HANDLERS,
                "--target",
                target,
                "--api-key",
                MASTER,
                "--poll-seconds",
                "0.5",
                "--lease-seconds",
                "1",
                "--log-format",
                "json",
            )
            started = worker.wait_for("worker_started")
            assert (started["target"], started["types"]) == (target, ["documentAdditionOrUpdate", "settingsUpdate"])
            assert "leasing from " + target in started["message"]
            worker.wait_for("batch_leased", uids=[fine])
            worker.wait_for("batch_reported", uids=[fine], failed=0)
            failed = worker.wait_for("task_failed", uid=failing)
            assert (failed["code"], failed["retry"], failed["level"]) == ("unreadable_documents", False, "INFO")
            # Idle, it says why the index `blocked` does not move: no handler here for its first task.
            unhandled = worker.wait_for("unhandled_type", type="indexCreation")
            assert (unhandled["uid"], unhandled["index_uid"], unhandled["level"]) == (blocker, "blocked", "WARNING")

            logged = server.wait_for("task_failed", uid=failing)
            assert (logged["code"], logged["type"], logged["index_uid"]) == (
                "unreadable_documents",
                "documentAdditionOrUpdate",
                "b",
            )

            # A retryable failure waits for its next attempt, then spends the last one.
            busy = stub.EnqueueTask(
                pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_SETTINGS_UPDATE, index_uid="s"), metadata=AUTH, timeout=5
            ).task.task_uid
            retrying = server.wait_for("task_retrying", uid=busy)
            assert (retrying["attempt"], retrying["code"], retrying["type"]) == (1, "settings_busy", "settingsUpdate")
            spent = server.wait_for("attempts_exhausted", uid=busy)
            assert (spent["attempt"], spent["code"]) == (2, "settings_busy")
            assert "the last allowed" in spent["message"]

            # A worker killed mid-task: its lease expires, and with one attempt allowed the task fails.
            hanging = documents(stub, "c", HANG)
            leased = worker.wait_for("batch_leased", uids=[hanging])
            worker.stop(signal.SIGKILL)
            expired = server.wait_for("lease_expired", uids=[hanging])
            assert expired["worker"] == started["worker"] and expired["attempts"] == [1]
            assert started["worker"] in expired["message"]
            exhausted = server.wait_for("attempts_exhausted", uid=hanging)
            assert (exhausted["attempt"], exhausted["code"]) == (1, "task_attempts_exhausted")
            # Six tasks (the seventh, the cleanup's own deletion): the oldest finished ones go.
            documents(stub, "d", 2)
            documents(stub, "d", 3)
            cleanup = server.wait_for("cleanup")
            assert cleanup["threshold"] == 6 and cleanup["deleted"] >= 2
            assert leased["batch_uid"] >= 0
    finally:
        if worker is not None:
            worker.stop()
        server.stop()

    with sqlite3.connect(f"file:{tmp_path / 'logs.db'}?mode=ro", uri=True) as db:
        tokens = [token for (token,) in db.execute("SELECT token FROM leases")]
    assert len(tokens) >= 3
    for process in (server, worker):
        text = process.path.read_text()
        assert MASTER not in text
        for token in tokens:
            assert token not in text
        for record in process.events():  # every line is one JSON object of the same shape
            assert {"time", "level", "logger", "message"} <= set(record), record
            assert record["time"].endswith("Z") and record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")


def test_a_full_queue_is_logged_once_in_text(tmp_path):
    server, target = serve(tmp_path, "--max-task-db-size", "1KiB")
    try:
        with grpc.insecure_channel(target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            for received in (1, 2):
                with pytest.raises(grpc.RpcError) as refused:
                    documents(stub, "a", received)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            deadline = time.monotonic() + 10
            while not any("the queue is full" in line for line in server.lines()):
                assert time.monotonic() < deadline, server.lines()
                time.sleep(0.1)
    finally:
        server.stop()
    full = [line for line in server.lines() if "the queue is full" in line]
    assert len(full) == 1 and " WARNING taskhub.server.rules.enqueue: " in full[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(full[0])


def test_the_gateway_logs_json_too_and_a_bad_format_is_refused(tmp_path):
    server, target = serve(tmp_path)
    http_port = free_port()
    gateway = Logged(
        tmp_path / "gateway.log",
        "gateway",
        "--grpc-target",
        target,
        "--http-listen",
        f"127.0.0.1:{http_port}",
        "--log-format",
        "JSON",
    )
    try:
        deadline = time.monotonic() + 20
        while not any("listening" in line for line in gateway.lines()):
            assert gateway.proc.poll() is None and time.monotonic() < deadline, gateway.lines()
            time.sleep(0.1)
    finally:
        gateway.stop()
        server.stop()
    records = gateway.events()
    assert any(f"127.0.0.1:{http_port}" in r["message"] and r["logger"] == "taskhub.gateway.serving" for r in records)
    for command in (["serve", "--db", str(tmp_path / "x.db")], ["gateway"], ["worker", HANDLERS]):
        refused = subprocess.run(
            [sys.executable, "-m", "taskhub.server.cli", *command, "--log-format", "yaml"],
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2 and "--log-format" in refused.stderr and "yaml" in refused.stderr, refused
