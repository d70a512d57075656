"""`taskhub serve` as a real subprocess: flags and env, health, clean shutdown on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskhub.server.cli import run_loop
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_serving(target: str, timeout: float = 20) -> grpc.Channel:
    channel = grpc.insecure_channel(target)
    deadline = time.monotonic() + timeout
    while True:
        try:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            if health.status == health_pb2.HealthCheckResponse.SERVING:
                return channel
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("sig", "event_loop"),
    [(signal.SIGTERM, "auto"), (signal.SIGINT, "auto"), (signal.SIGTERM, "asyncio"), (signal.SIGINT, "asyncio")],
)
def test_serve_answers_and_stops_cleanly(tmp_path, sig, event_loop):
    port = free_port()
    db = tmp_path / "q.db"
    # The database path comes from the environment, the address from a flag.
    env = {**os.environ, "TASKHUB_DB": str(db)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--grpc-listen",
            f"127.0.0.1:{port}",
            "--no-http",
            "--event-loop",
            event_loop,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        channel = wait_serving(f"127.0.0.1:{port}")
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="movies")
        assert stub.EnqueueTask(request, timeout=5).task.task_uid == 0
        channel.close()
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "stopped cleanly" in output
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT uid, index_uid FROM tasks").fetchall() == [(0, "movies")]


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_event_loop_is_uvloop_unless_told_otherwise():
    assert run_loop(_loop_module(), "auto").startswith("uvloop")
    assert run_loop(_loop_module(), "uvloop").startswith("uvloop")
    assert run_loop(_loop_module(), "asyncio").startswith("asyncio")


def test_serve_refuses_an_unknown_event_loop(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            str(tmp_path / "q.db"),
            "--grpc-listen",
            f"127.0.0.1:{free_port()}",
            "--no-http",
            "--event-loop",
            "tokio",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "--event-loop is `auto`, `uvloop` or `asyncio`, not `tokio`" in result.stderr
    assert not (tmp_path / "q.db").exists()  # refused before anything was opened


def test_serve_reports_a_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "taskhub.server.cli",
                "serve",
                "--db",
                str(tmp_path / "q.db"),
                "--grpc-listen",
                f"127.0.0.1:{port}",
                "--no-http",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_sigterm_ends_streams_clearly_and_leaves_one_clean_file(tmp_path):
    from google.protobuf import duration_pb2

    from taskhub.v1 import worker_service_pb2 as wpb, worker_service_pb2_grpc

    port = free_port()
    db = tmp_path / "q.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            str(db),
            "--grpc-listen",
            f"127.0.0.1:{port}",
            "--no-http",
            "--grace-seconds",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        channel = wait_serving(f"127.0.0.1:{port}")
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        stub.EnqueueTask(pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="a"), timeout=5)
        watch = stub.WatchTask(pb.WatchTaskRequest(uid=0), timeout=30)
        assert next(watch).task.uid == 0
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        # A long poll that takes the only task, then one that waits for more.
        workers.LeaseTasks(wpb.LeaseTasksRequest(), timeout=5)
        assert next(watch).task.status == task_pb2.TASK_STATUS_PROCESSING
        waiting = workers.LeaseTasks.future(wpb.LeaseTasksRequest(wait=duration_pb2.Duration(seconds=30)), timeout=30)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ended.value.details() == "The server is shutting down; reconnect and resume."
        assert not waiting.result().HasField("lease")
        output, _ = proc.communicate(timeout=20)
        # Nothing was left in flight, so the grace period was not waited out.
        assert time.monotonic() - started < 8
        channel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # Still processing on disk: the next start puts it back to enqueued.
        assert conn.execute("SELECT status FROM tasks").fetchall() == [(2,)]
