"""Failover across real replicas: two `taskhub serve` on one PostgreSQL database, one SIGKILLed mid-run.

A producer, a worker and a watcher go through the client with both targets. When one replica dies
no acknowledged task is lost or doubled (a retried enqueue replays under its idempotency key, on the
other replica), the worker's leases live on (its renewals and reports go to the other replica: the
lease is the database's), and the watcher resumes on the other replica after the last sequence it
saw, with no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import pathlib
import signal
import subprocess

import pytest

from taskhub.client import AsyncTaskHubClient, TaskChange, TaskStatus
from taskhub.client.worker import Worker
from test_replicas import spawn
from test_serve import wait_serving

pytestmark = pytest.mark.slow  # starts and SIGKILLs `taskhub serve` subprocesses

TASKS = 120
KILL_AFTER = 40
PRODUCERS = 4


class Replica:
    """One `taskhub serve` subprocess on the shared database; its output goes to a log file."""

    def __init__(self, db: str, folder: pathlib.Path, name: str) -> None:
        # The same command line as the replicas' own tests (tests/test_replicas.py).
        self.process, self.target = spawn(db, name, folder)
        self.log = folder / f"{name}.log"
        try:
            wait_serving(self.target).close()
        except BaseException:
            self.process.kill()
            raise

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def replicas(postgres_cluster, tmp_path):
    db = postgres_cluster.create_database("failover")
    started: list[Replica] = []
    try:
        for name in ("r1", "r2"):
            started.append(Replica(db, tmp_path, name))
        yield started
    finally:
        for replica in started:
            replica.stop()


async def _until(predicate, what: str, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_a_replica_killed_under_a_producer_a_worker_and_a_watcher_loses_and_doubles_nothing(replicas):
    r1, r2 = replicas
    targets = f"{r1.target},{r2.target}"
    changes: list[TaskChange] = []
    ran: list[int] = []

    async def handler(job):
        ran.append(job.uid)
        await asyncio.sleep(0.02)  # a lease is held while the replica dies
        return {"indexedDocuments": 1}

    # Short leases, so a lease whose grant the kill lost expires and is leased again within the test.
    worker = Worker(targets, {"documentAdditionOrUpdate": handler}, poll_seconds=1, lease_seconds=3, max_tasks=5)
    async with AsyncTaskHubClient(targets, timeout=20) as client:

        async def watch() -> None:
            async for change in client.watch_tasks():
                changes.append(change)

        watcher = asyncio.create_task(watch())
        working = asyncio.create_task(worker.run_async())
        acknowledged: list[int] = []
        try:
            # The watch is open once it sees a change: enqueue until it does (those tasks count too).
            for _ in range(200):
                acknowledged.append(
                    (await client.enqueue("documentAdditionOrUpdate", "movies", {"receivedDocuments": 1})).uid
                )
                if changes:
                    break
                await asyncio.sleep(0.05)
            assert changes, "the watch never opened"
            first = len(acknowledged)
            killed = asyncio.Event()

            async def produce() -> None:
                # Several at once, so calls are in flight on the replica when it dies.
                for _ in range(TASKS // PRODUCERS):
                    summary = await client.enqueue("documentAdditionOrUpdate", "movies", {"receivedDocuments": 1})
                    acknowledged.append(summary.uid)
                    if len(acknowledged) - first >= KILL_AFTER and not killed.is_set():
                        killed.set()
                        r1.kill()

            await asyncio.gather(*(produce() for _ in range(PRODUCERS)))
            assert len(set(acknowledged)) == len(acknowledged) == first + TASKS

            # Every acknowledged task runs to success (a lease the kill orphaned expires and is leased again).
            for uid in acknowledged:
                assert (await client.wait_for_task(uid, timeout=60)).status == TaskStatus.SUCCEEDED
            page = await client.list_tasks(limit=0)
            assert page.total == len(acknowledged)  # none doubled: a retried enqueue replayed its first task
            # Each ran once: its lease held whichever replica its renewals and report went to.
            assert sorted(ran) == sorted(acknowledged)

            # The watcher saw each task's success, its sequences following on with no gap and no repeat.
            def successes() -> set[int]:
                return {c.task.uid for c in changes if c.task.status == TaskStatus.SUCCEEDED}

            await _until(lambda: set(acknowledged) <= successes(), "the watcher saw every success")
            sequences = [c.sequence for c in changes]
            assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
            assert not watcher.done() and not working.done()
        finally:
            worker.stop()
            watcher.cancel()
            await asyncio.wait_for(working, 30)
    print("tasks", len(acknowledged), "runs", len(ran), "changes seen", len(changes))
