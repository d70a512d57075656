"""Several `taskhub worker` processes on one real server: exclusivity, per-index order, parallelism, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # runs worker subprocesses

HANDLERS = str(Path(__file__).with_name("worker_handlers.py"))


@pytest.fixture
def server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            str(tmp_path / "w.db"),
            "--no-http",
            "--grpc-listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
        ]
    )
    channel = wait_serving(f"127.0.0.1:{port}")
    yield f"127.0.0.1:{port}", task_service_pb2_grpc.TaskServiceStub(channel)
    channel.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


def start_workers(target: str, log: Path, count: int, sleep: float, *extra: str) -> list[subprocess.Popen]:
    env = {**os.environ, "TASKHUB_TEST_LOG": str(log), "TASKHUB_TEST_SLEEP": str(sleep)}
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskhub.server.cli",
                "worker",
                HANDLERS,
                "--target",
                target,
                "--poll-seconds",
                "0.5",
                "--log-level",
                "WARNING",
                *extra,
            ],
            env=env,
        )
        for _ in range(count)
    ]


def stop(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        assert proc.wait(timeout=20) in (0, -signal.SIGKILL)


def enqueue_mix(stub, count: int) -> dict[int, str]:
    indexes = {}
    for i in range(count):
        index = "abcd"[i % 4]
        if i % 7 == 0:
            request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid=index)
        else:
            request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=index)
            request.details.document_addition_or_update.received_documents = i
        indexes[stub.EnqueueTask(request, timeout=5).task.task_uid] = index
    return indexes


def wait_all_succeeded(stub, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    succeeded = task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[task_pb2.TASK_STATUS_SUCCEEDED]))
    while stub.ListTasks(pb.ListTasksRequest(filter=succeeded, limit=0), timeout=5).total < count:
        assert time.monotonic() < deadline, "the workers did not finish in time"
        time.sleep(0.1)


def runs(log: Path) -> dict[int, list[dict]]:
    by_uid = defaultdict(list)
    for line in log.read_text().splitlines():
        event = json.loads(line)
        by_uid[event["uid"]].append(event)
    return by_uid


def test_workers_share_the_queue_in_order_and_in_parallel(server, tmp_path):
    target, stub = server
    log = tmp_path / "runs.jsonl"
    indexes = enqueue_mix(stub, 60)
    workers = start_workers(target, log, 3, 0.03, "--concurrency", "2", "--max-tasks", "3")
    try:
        wait_all_succeeded(stub, 60)
    finally:
        stop(workers)
    by_uid = runs(log)
    assert sorted(by_uid) == sorted(indexes)
    # Exactly once each: one start and one end, in the same process.
    for uid, events in by_uid.items():
        assert [e["event"] for e in events] == ["start", "end"] and events[0]["pid"] == events[1]["pid"], uid
    # Per index: runs never overlap and follow uid order.
    spans = defaultdict(list)
    for uid, (start, end) in by_uid.items():
        spans[indexes[uid]].append((start["at"], end["at"], uid))
    for index, intervals in spans.items():
        intervals.sort()
        assert [uid for _, _, uid in intervals] == sorted(uid for _, _, uid in intervals), index
        for (_, end, _), (start, _, _) in pairwise(intervals):
            assert end <= start, f"two tasks of {index} ran at once"
    # Different indexes did run at the same time, in more than one process.
    every = sorted((s, e) for intervals in spans.values() for s, e, _ in intervals)
    assert any(later_start < end for (_, end), (later_start, _) in pairwise(every))
    assert len({e["pid"] for events in by_uid.values() for e in events}) > 1


def test_a_killed_workers_batch_comes_back_and_is_done_once(server, tmp_path):
    target, stub = server
    log = tmp_path / "runs.jsonl"
    indexes = enqueue_mix(stub, 8)
    (victim,) = start_workers(target, log, 1, 2.0, "--lease-seconds", "1")
    deadline = time.monotonic() + 20
    while not (log.exists() and log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    started = json.loads(log.read_text().splitlines()[0])
    assert started["event"] == "start" and started["pid"] == victim.pid
    survivors = start_workers(target, log, 2, 0.02, "--lease-seconds", "1")
    try:
        wait_all_succeeded(stub, 8)
    finally:
        stop(survivors)
    by_uid = runs(log)
    assert sorted(by_uid) == sorted(indexes)
    victim_uid = started["uid"]
    # The interrupted task ran again elsewhere and finished once; every other task ran once.
    finished = [e for e in by_uid[victim_uid] if e["event"] == "end"]
    assert len(finished) == 1 and finished[0]["pid"] != victim.pid
    for uid, events in by_uid.items():
        if uid != victim_uid:
            assert [e["event"] for e in events] == ["start", "end"]
    task = stub.GetTask(pb.GetTaskRequest(uid=victim_uid), timeout=5).task
    assert task.status == task_pb2.TASK_STATUS_SUCCEEDED
