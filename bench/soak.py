"""Soak: producers, workers, watchers and cancel/delete traffic against a real server for a while.

    .venv/bin/python bench/soak.py --seconds 300

Starts `taskhub serve` on a free 127.0.0.1 port over a fresh database, runs the
load (half the producers send EnqueueTasks batches, half the workers lease from
four indexes only), then checks the invariants: every acknowledged enqueue and
report is there (unless a deletion named it), each EnqueueTasks call got
consecutive uids, no task reached a terminal status twice (as seen by watchers
following every change), watchers saw gapless sequence numbers, and the
server's memory stayed flat. Prints figures and exits 1 if an invariant broke.
`worker FAILED_PRECONDITION` among the client-side errors is expected: a worker
reporting a batch that a cancelation stopped gets `lease_lost`.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness import free_port, rss_mib
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

TERMINAL = {task_pb2.TASK_STATUS_SUCCEEDED, task_pb2.TASK_STATUS_FAILED, task_pb2.TASK_STATUS_CANCELED}


class Soak:
    """The load threads and what they were told."""

    def __init__(self, target: str, stop: threading.Event) -> None:
        self.target = target
        self.stop = stop
        self.lock = threading.Lock()
        self.acked: set[int] = set()
        self.deletable: set[int] = set()
        self.completed: set[int] = set()
        self.terminal_events: Counter[int] = Counter()
        self.gaps: list[tuple[int, int]] = []
        self.events = 0
        self.errors: Counter[str] = Counter()
        self.split_batches = 0  # EnqueueTasks answers whose uids were not consecutive

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)

    def producer(self, seed: int) -> None:
        """Odd seeds enqueue one task a call; even ones send EnqueueTasks of 1 to 20."""
        rng, stub = random.Random(seed), task_service_pb2_grpc.TaskServiceStub(self.channel())
        while not self.stop.is_set():
            requests = [
                pb.EnqueueTaskRequest(
                    type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=rng.choice("abcdefgh")
                )
                for _ in range(1 if seed % 2 else rng.randint(1, 20))
            ]
            for request in requests:
                request.details.document_addition_or_update.received_documents = rng.randint(1, 1000)
            try:
                if seed % 2:
                    uids = [stub.EnqueueTask(requests[0], timeout=5).task.task_uid]
                else:
                    tasks = stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=requests), timeout=5).tasks
                    uids = [t.task_uid for t in tasks]
            except grpc.RpcError as error:
                self.errors[f"enqueue {error.code().name}"] += 1
                continue
            with self.lock:
                self.acked.update(uids)
                self.split_batches += uids != list(range(uids[0], uids[0] + len(uids)))

    def worker(self, seed: int) -> None:
        """Odd seeds take any index; even ones only four of the eight."""
        rng, workers = random.Random(seed), worker_service_pb2_grpc.WorkerServiceStub(self.channel())
        request = wpb.LeaseTasksRequest(worker=f"soak-{seed}", max_tasks=20, wait={"nanos": 200_000_000})
        if seed % 2 == 0:
            request.index_uids.index_uids.extend(rng.sample("abcdefgh", 4))
        while not self.stop.is_set():
            try:
                lease = workers.LeaseTasks(request, timeout=5)
                if not lease.HasField("lease"):
                    continue
                outcomes = []
                for task in lease.tasks:
                    outcome = wpb.TaskOutcome(uid=task.uid)
                    if rng.random() < 0.1:
                        outcome.error.message, outcome.error.code = "soak failure", "soak_failure"
                    outcomes.append(outcome)
                workers.CompleteTasks(wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=outcomes), timeout=5)
            except grpc.RpcError as error:
                self.errors[f"worker {error.code().name}"] += 1
                continue
            with self.lock:
                self.completed.update(o.uid for o in outcomes if not o.HasField("error"))

    def meddler(self, seed: int) -> None:
        rng, stub = random.Random(seed), task_service_pb2_grpc.TaskServiceStub(self.channel())
        while not self.stop.wait(0.2):
            with self.lock:
                known = sorted(self.acked)
            if not known:
                continue
            uids = rng.sample(known, min(20, len(known)))
            chosen = task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=uids))
            try:
                if rng.random() < 0.5:
                    stub.CancelTasks(pb.CancelTasksRequest(filter=chosen), timeout=5)
                else:
                    with self.lock:
                        self.deletable.update(uids)
                    stub.DeleteTasks(pb.DeleteTasksRequest(filter=chosen), timeout=5)
            except grpc.RpcError as error:
                self.errors[f"meddle {error.code().name}"] += 1

    def watcher(self, first: bool) -> None:
        """Follows every change; the first watcher also counts terminal transitions per task."""
        stub = task_service_pb2_grpc.TaskServiceStub(self.channel())
        last = None
        while not self.stop.is_set():
            request = pb.WatchTasksRequest()
            if last is not None:
                request.after = last
            stream = stub.WatchTasks(request)
            try:
                for event in stream:
                    if last is not None and event.sequence != last + 1:
                        with self.lock:
                            self.gaps.append((last, event.sequence))
                    last = event.sequence
                    with self.lock:
                        self.events += 1
                        if first and event.task.status in TERMINAL and not event.deleted:
                            self.terminal_events[event.task.uid] += 1
                    if self.stop.is_set():
                        stream.cancel()
                        break
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    self.errors[f"watch {error.code().name}"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--watchers", type=int, default=8)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="taskhub-soak-")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            f"{tmp}/soak.db",
            "--no-http",
            "--grpc-listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
        ]
    )
    target = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=30)
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)

    stop = threading.Event()
    soak = Soak(target, stop)
    threads = [threading.Thread(target=soak.watcher, args=(i == 0,), daemon=True) for i in range(args.watchers)]
    threads += [threading.Thread(target=soak.producer, args=(i,), daemon=True) for i in range(args.producers)]
    threads += [threading.Thread(target=soak.worker, args=(i,), daemon=True) for i in range(args.workers)]
    threads.append(threading.Thread(target=soak.meddler, args=(99,), daemon=True))
    for thread in threads:
        thread.start()

    started, samples = time.monotonic(), []
    while time.monotonic() - started < args.seconds:
        time.sleep(1)
        samples.append(rss_mib(server.pid))
    stop.set()
    for thread in threads:
        thread.join(timeout=10)

    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    present, statuses, from_uid = set(), Counter(), None
    while True:
        request = pb.ListTasksRequest(limit=10_000)
        if from_uid is not None:
            setattr(request, "from", from_uid)
        page = stub.ListTasks(request, timeout=30)
        for task in page.results:
            present.add(task.uid)
            statuses[task_pb2.TaskStatus.Name(task.status)] += 1
        if not page.HasField("next"):
            break
        from_uid = page.next

    problems = []
    lost = soak.acked - present - soak.deletable
    if lost:
        problems.append(f"{len(lost)} acknowledged tasks lost, e.g. {sorted(lost)[:5]}")
    twice = [uid for uid, n in soak.terminal_events.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} tasks reached a terminal status twice, e.g. {twice[:5]}")
    if soak.split_batches:
        problems.append(f"{soak.split_batches} EnqueueTasks calls got uids that are not consecutive")
    if soak.gaps:
        problems.append(f"watchers saw {len(soak.gaps)} sequence gaps, e.g. {soak.gaps[:3]}")
    warm = samples[len(samples) // 4] if samples else 0
    growth = samples[-1] / warm if warm else 1.0
    if growth > 1.5:
        problems.append(f"server RSS grew {growth:.2f}x after warm-up ({warm:.0f} -> {samples[-1]:.0f} MiB)")

    elapsed = time.monotonic() - started
    print(
        f"soak {elapsed:.0f}s: {len(soak.acked)} enqueued ({len(soak.acked) / elapsed:.0f}/s),"
        f" {len(soak.completed)} reported, {soak.events} watch events, tasks now {dict(statuses)}"
    )
    print(f"server RSS MiB: warm {warm:.0f}, end {samples[-1] if samples else 0:.0f}, growth x{growth:.2f}")
    print(f"client-side errors: {dict(soak.errors) or 'none'}")
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    print("invariants:", "OK" if not problems else "BROKEN")
    for problem in problems:
        print("  -", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
