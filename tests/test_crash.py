"""Crash safety: a real server killed with SIGKILL at random moments under load, then checked.

Producers enqueue, workers lease and complete, cancelations and deletions run,
and the server dies mid-flight, again and again. After each restart: every
acknowledged enqueue is there (unless a deletion that named it ran), uids keep
increasing, nothing is processing, no report was applied twice, every state is
whole. `TASKHUB_CRASH_ROUNDS` runs more rounds (CI runs a few).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import grpc
import pytest

from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # kills `taskhub serve` subprocesses under load

ROUNDS = int(os.environ.get("TASKHUB_CRASH_ROUNDS", "4"))
SERVER_RUN = (
    task_pb2.TASK_TYPE_TASK_CANCELATION,
    task_pb2.TASK_TYPE_TASK_DELETION,
    task_pb2.TASK_TYPE_DUMP_CREATION,
    task_pb2.TASK_TYPE_SNAPSHOT_CREATION,
)


class Ledger:
    """What the clients were told (acknowledged) or tried, shared by the load threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: set[int] = set()
        self.deletable: set[int] = set()  # named by some deletion, acknowledged or not
        self.completed: set[int] = set()  # reported succeeded, and the report acknowledged
        self.max_acked = -1


def load(target: str, ledger: Ledger, stop: threading.Event, seed: int) -> list[threading.Thread]:
    rng = random.Random(seed)

    def producer():
        stub = task_service_pb2_grpc.TaskServiceStub(grpc.insecure_channel(target))
        while not stop.is_set():
            index = rng.choice(["a", "b", "c"])
            request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_INDEX_CREATION, index_uid=index)
            try:
                uid = stub.EnqueueTask(request, timeout=2).task.task_uid
            except grpc.RpcError:
                continue
            with ledger.lock:
                assert uid not in ledger.acked, f"uid {uid} given twice"
                ledger.acked.add(uid)
                ledger.max_acked = max(ledger.max_acked, uid)

    def worker():
        workers = worker_service_pb2_grpc.WorkerServiceStub(grpc.insecure_channel(target))
        while not stop.is_set():
            try:
                lease = workers.LeaseTasks(
                    wpb.LeaseTasksRequest(worker="crash", wait={"nanos": 200_000_000}), timeout=2
                )
                if not lease.HasField("lease"):
                    continue
                uids = [t.uid for t in lease.tasks]
                workers.CompleteTasks(
                    wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=[wpb.TaskOutcome(uid=u) for u in uids]),
                    timeout=2,
                )
            except grpc.RpcError:
                continue
            with ledger.lock:
                ledger.completed.update(uids)

    def meddler():
        stub = task_service_pb2_grpc.TaskServiceStub(grpc.insecure_channel(target))
        while not stop.is_set():
            time.sleep(0.05)
            with ledger.lock:
                known = sorted(ledger.acked)
            if not known:
                continue
            uids = rng.sample(known, min(5, len(known)))
            chosen = task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=uids))
            try:
                if rng.random() < 0.5:
                    stub.CancelTasks(pb.CancelTasksRequest(filter=chosen), timeout=2)
                else:
                    with ledger.lock:
                        ledger.deletable.update(uids)
                    stub.DeleteTasks(pb.DeleteTasksRequest(filter=chosen), timeout=2)
            except grpc.RpcError:
                continue

    threads = [threading.Thread(target=f, daemon=True) for f in (producer, producer, worker, worker, meddler)]
    for thread in threads:
        thread.start()
    return threads


def check(db, ledger: Ledger) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = {
            uid: (status, type_, canceled_by, started, finished)
            for uid, status, type_, canceled_by, started, finished in conn.execute(
                "SELECT uid, status, type, canceled_by, started_at, finished_at FROM tasks"
            )
        }
        next_uid = conn.execute("SELECT value FROM meta WHERE key = 'next_uid'").fetchone()[0]
        count = conn.execute("SELECT value FROM meta WHERE key = 'task_count'").fetchone()[0]
    assert count == len(rows)
    assert next_uid > max(rows, default=-1) and next_uid > ledger.max_acked
    missing = ledger.acked - set(rows)
    assert missing <= ledger.deletable, f"acknowledged tasks lost: {sorted(missing - ledger.deletable)[:10]}"
    for uid, (status, type_, canceled_by, started, finished) in rows.items():
        # Only the server's own tasks (which it may already be running again) can be processing.
        assert status != task_pb2.TASK_STATUS_PROCESSING or type_ in SERVER_RUN, f"task {uid} still processing"
        if status == task_pb2.TASK_STATUS_ENQUEUED:
            assert started is None and finished is None, f"task {uid} half-started"
        else:
            assert finished is not None, f"task {uid} finished without finishedAt"
        if status == task_pb2.TASK_STATUS_CANCELED:
            assert (
                canceled_by is not None
                and rows.get(canceled_by, (task_pb2.TASK_STATUS_SUCCEEDED,))[0] == task_pb2.TASK_STATUS_SUCCEEDED
            ), f"task {uid} canceled by an unfinished cancelation"
    for uid in ledger.completed & set(rows):
        # An acknowledged report is applied: the task succeeded (it was never canceled afterwards).
        assert rows[uid][0] == task_pb2.TASK_STATUS_SUCCEEDED, f"acknowledged report of {uid} lost"


# Each round takes 2-4 s: the suite's 60 s limit would cut a long run short.
@pytest.mark.timeout(60 + 10 * ROUNDS)
def test_sigkill_under_load_loses_nothing(tmp_path):
    db = tmp_path / "crash.db"
    ledger = Ledger()
    rng = random.Random(7)
    for round_ in range(ROUNDS):
        port = free_port()
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
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_serving(f"127.0.0.1:{port}").close()
            # Right after a restart, before any load: nothing is processing.
            check(db, ledger)
            stop = threading.Event()
            threads = load(f"127.0.0.1:{port}", ledger, stop, seed=round_)
            time.sleep(rng.uniform(0.5, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    port = free_port()
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_serving(f"127.0.0.1:{port}").close()
        check(db, ledger)
        assert len(ledger.acked) > 20 * ROUNDS and ledger.completed, "the load did too little to prove anything"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
