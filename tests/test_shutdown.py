"""SIGTERM with a slow HTTP upload in flight, on a real `taskhub serve` subprocess.

Every listener stops taking calls at once (gRPC and HTTP, with no wait on each
other), in-flight calls get the grace, and the process is gone within
`--grace-seconds` plus a small margin.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time

import grpc
import pytest

from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # signals `taskhub serve` subprocesses

GRACE = 4.0
# Room for the interpreter to close the store and exit on a loaded machine; still short of twice GRACE.
MARGIN = 3.0


def connect(port: int) -> socket.socket:
    """A connection to the gateway, once it listens (it starts after the gRPC server)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


BODY = b'{"type": "indexCreation", "indexUid": "books"}'


def begin_upload(upload: socket.socket, port: int) -> None:
    """A slow `POST /tasks`: the headers and a first chunk of the body; the gateway waits for the rest."""
    upload.sendall(
        b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (port, len(BODY), BODY[:10])
    )
    upload.settimeout(0.5)
    with pytest.raises(TimeoutError):  # no answer: the request is in flight
        upload.recv(1)
    upload.settimeout(30)


def test_sigterm_refuses_new_calls_at_once_and_exits_within_the_grace(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            str(tmp_path / "q.db"),
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
            "--grace-seconds",
            str(GRACE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    upload = None
    try:
        channel = wait_serving(f"127.0.0.1:{grpc_port}")
        upload = connect(http_port)
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="movies")
        assert stub.EnqueueTask(request, timeout=5).task.task_uid == 0
        begin_upload(upload, http_port)  # the rest of the body never comes
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        time.sleep(0.5)

        # New calls are refused, on the connection already open and on a new one, until the process is gone.
        acknowledged = []
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as fresh:
            fresh_stub = task_service_pb2_grpc.TaskServiceStub(fresh)
            while proc.poll() is None and time.monotonic() - sent < GRACE + MARGIN:
                for calls in (stub, fresh_stub):
                    try:
                        acknowledged.append(calls.EnqueueTask(request, timeout=1).task.task_uid)
                    except grpc.RpcError as error:
                        assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                with pytest.raises(OSError):
                    socket.create_connection(("127.0.0.1", http_port), timeout=1).close()
                time.sleep(0.1)
        assert acknowledged == []
        output, _ = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
        channel.close()
    finally:
        if upload is not None:
            upload.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "stopped cleanly" in output
    assert elapsed < GRACE + MARGIN, f"exited {elapsed:.1f}s after SIGTERM"


def test_an_upload_that_ends_after_sigterm_is_refused_not_acknowledged(tmp_path):
    grpc_port, http_port = free_port(), free_port()
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
            f"127.0.0.1:{grpc_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
            "--grace-seconds",
            str(GRACE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    upload = None
    try:
        wait_serving(f"127.0.0.1:{grpc_port}").close()
        upload = connect(http_port)
        begin_upload(upload, http_port)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        upload.sendall(BODY[10:])
        answer = b""
        while chunk := upload.recv(65536):  # the gateway closes the connection after it: it is stopping
            answer += chunk
        answer = answer.decode()
        output, _ = proc.communicate(timeout=30)
    finally:
        if upload is not None:
            upload.close()
        if proc.poll() is None:
            proc.kill()
    assert answer.startswith("HTTP/1.1 503"), answer
    assert '"code":"unavailable"' in answer.replace(" ", "")
    assert proc.returncode == 0, output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone() == (0,)
