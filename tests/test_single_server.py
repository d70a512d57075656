"""One server per SQLite file and per gRPC port, with real `taskhub serve` subprocesses.

The database is guarded by a kernel lock on a sidecar file (`<db>.lock`): a second
server on it exits naming the file and the pid holding it, and a restart right
after SIGKILL starts, since the kernel dropped the dead process's lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys

import pytest

from taskhub.server import app
from taskhub.server.storage.sqlite.database import SqliteStorage
from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # starts, kills and restarts `taskhub serve` subprocesses


def serve(db, port: int, *extra: str) -> list[str]:
    return [
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
        "1",
        *extra,
    ]


def start(db, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(serve(db, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_serving(f"127.0.0.1:{port}").close()
    return proc


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return output


def test_a_second_server_on_the_same_database_exits_naming_the_lock_and_its_pid(tmp_path):
    db = tmp_path / "q.db"
    first = start(db, free_port())
    try:
        # Another gRPC port, so only the database is shared.
        second = subprocess.run(serve(db, free_port()), capture_output=True, text=True, timeout=20)
        assert second.returncode == 1
        assert f"{db}.lock" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert first.poll() is None  # the first server is untouched
    finally:
        stop(first)


def test_a_taken_grpc_port_is_an_error_at_start(tmp_path):
    port = free_port()
    first = start(tmp_path / "a.db", port)
    try:
        second = subprocess.run(serve(tmp_path / "b.db", port), capture_output=True, text=True, timeout=20)
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    finally:
        stop(first)


def test_a_restart_right_after_sigkill_starts_on_the_same_file_and_port(tmp_path):
    db, port = tmp_path / "q.db", free_port()
    first = start(db, port)
    channel = wait_serving(f"127.0.0.1:{port}")
    request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid="movies")
    task_service_pb2_grpc.TaskServiceStub(channel).EnqueueTask(request, timeout=5)
    channel.close()
    first.kill()
    first.wait(timeout=10)
    second = start(db, port)
    try:
        channel = wait_serving(f"127.0.0.1:{port}")
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        assert stub.EnqueueTask(request, timeout=5).task.task_uid == 1
        channel.close()
    finally:
        output = stop(second)
    assert second.returncode == 0, output


@pytest.mark.sqlite_only(reason="SQLite's lock file; test_postgres_server.py has PostgreSQL's lock")
async def test_a_second_service_in_the_same_process_is_refused_until_the_first_stops(config):
    first = await app.start(config, background=False)
    try:
        with pytest.raises(OSError, match=r"\.lock"):
            await app.start(dataclasses.replace(config, grpc_listen="127.0.0.1:0"), background=False)
        # Readers of the file (snapshots, the bench loader, tests) take no lock.
        reader = SqliteStorage(config.db)
        assert reader.tasks.get(0) is None
        reader.close()
    finally:
        await first.stop(0)
    again = await app.start(config, background=False)
    await again.stop(0)


@pytest.mark.sqlite_only(reason="a file reached through a symlink")
async def test_a_database_reached_through_a_symlink_is_the_same_database(config, tmp_path):
    first = await app.start(config, background=False)
    try:
        link = tmp_path / "link.db"
        link.symlink_to(config.db)
        with pytest.raises(OSError, match=r"\.lock"):
            await app.start(dataclasses.replace(config, db=str(link), grpc_listen="127.0.0.1:0"), background=False)
    finally:
        await first.stop(0)


async def test_a_start_that_fails_part_way_stops_what_it_started(config, monkeypatch):
    import threading

    from taskhub.server import app as app_module

    before = {t.ident for t in threading.enumerate()}

    def broken(*args, **kwargs):
        raise RuntimeError("reflection could not start")

    monkeypatch.setattr(app_module.reflection, "enable_server_reflection", broken)
    with pytest.raises(RuntimeError, match="reflection"):
        await app.start(config, background=False)
    monkeypatch.undo()
    await asyncio.sleep(0.2)
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("taskhub")]
    assert left == []
    service = await app.start(config, background=False)
    await service.stop(0)
