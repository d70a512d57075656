"""Replicas under faults: one of three `taskhub serve` processes SIGKILLed at random moments, again and again,
while producers, workers and watchers use all three.

Every acknowledged task is there once (producers retry on another replica under their
idempotency key); watchers resume on another replica with no gap and no duplicate; the
leases a worker took through a killed replica, and never reported, expire and are leased
again; every task ends succeeded.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import grpc
import pytest

from taskhub.v1 import task_pb2 as T, task_service_pb2 as pb
from test_replicas import Replica, complete, enqueue, history, lease, serve, stop, wait_until, watch

pytestmark = pytest.mark.slow  # SIGKILLs `taskhub serve` subprocesses under load

ROUNDS = 3
LEASE_SECONDS = 2


class Cluster:
    """Three replicas by slot; a slot's replica may be killed and started again."""

    def __init__(self, db: str, folder) -> None:
        self.db, self.folder = db, folder
        self.slots: list[Replica] = [serve(db, name, folder) for name in ("r0", "r1", "r2")]
        self.lock = threading.Lock()

    def live(self) -> list[Replica]:
        with self.lock:
            return [r for r in self.slots if r.proc.poll() is None]

    def any(self, rng: random.Random) -> Replica:
        return rng.choice(self.live())


def produce(cluster: Cluster, name: str, done: threading.Event, acknowledged: dict[str, int]) -> None:
    rng = random.Random(name)
    for i in range(100_000):
        if done.is_set():
            return
        key = f"{name}-{i}"
        while True:  # the same key until acknowledged, on whichever replica answers
            try:
                acknowledged[key] = enqueue(cluster.any(rng).tasks, f"i{i % 4}", idempotency_key=key)
                break
            except (grpc.RpcError, IndexError, ValueError):
                time.sleep(0.05)
        time.sleep(0.01)


def work(cluster: Cluster, name: str, done: threading.Event, completed: list[int]) -> None:
    rng = random.Random(name)
    while not done.is_set():
        try:
            answer = lease(cluster.any(rng).workers, name, seconds=LEASE_SECONDS, wait=0.3, max_tasks=5)
        except (grpc.RpcError, IndexError, ValueError):
            time.sleep(0.05)
            continue
        if answer is None:
            continue
        for _ in range(20):  # the report, on another replica when this one died
            try:
                complete(cluster.any(rng).workers, answer)
                completed.extend(t.uid for t in answer.tasks)
                break
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    break  # the lease expired meanwhile: its tasks went back, and are leased again
                time.sleep(0.05)
            except (IndexError, ValueError):  # none live, or a channel closed as its replica died
                time.sleep(0.05)


def follow(cluster: Cluster, name: str, done: threading.Event, seen: list[int], resumed: list[str]) -> None:
    rng = random.Random(name)
    after: int | None = None
    while not done.is_set():
        try:
            stream = watch(cluster.any(rng).tasks, after=after)
        except (IndexError, ValueError):
            time.sleep(0.05)
            continue
        stopper = threading.Thread(target=lambda s=stream: (done.wait(), s.cancel()), daemon=True)
        stopper.start()
        try:
            for event in stream:
                seen.append(event.sequence)
                after = event.sequence
        except (grpc.RpcError, ValueError):
            if not done.is_set():
                resumed.append(name)
            time.sleep(0.05)  # the replica died or went away: resume on another from `after`


def test_replicas_killed_at_random_moments_lose_nothing_acknowledged(postgres_cluster, tmp_path):
    db = postgres_cluster.create_database("replica_faults")
    cluster = Cluster(db, tmp_path)
    rng = random.Random(25)
    done, drained = threading.Event(), threading.Event()
    acknowledged: dict[str, int] = {}
    completed: list[int] = []
    watched: dict[str, list[int]] = {f"watcher{i}": [] for i in range(3)}
    abandoned: list[int] = []
    resumed: list[str] = []
    threads = [threading.Thread(target=produce, args=(cluster, f"p{i}", done, acknowledged)) for i in range(3)]
    threads += [threading.Thread(target=work, args=(cluster, f"w{i}", drained, completed)) for i in range(2)]
    threads += [threading.Thread(target=follow, args=(cluster, n, drained, s, resumed)) for n, s in watched.items()]
    try:
        for thread in threads:
            thread.start()
        for _ in range(ROUNDS):
            time.sleep(rng.uniform(0.5, 2.0))
            slot = rng.randrange(3)
            victim = cluster.slots[slot]
            # A worker that dies with the replica it talked to: its lease is never reported.
            taken = lease(victim.workers, "doomed", seconds=LEASE_SECONDS, max_tasks=3)
            abandoned += [t.uid for t in taken.tasks] if taken else []
            time.sleep(rng.uniform(0.0, 1.0))
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            victim.channel.close()
            time.sleep(rng.uniform(0.5, 2.0))
            with cluster.lock:
                cluster.slots[slot] = serve(db, victim.name, tmp_path)
        done.set()
        for thread in threads[:3]:
            thread.join(timeout=30)
        # Workers go on until every task ended: the abandoned leases expire first (a leader must see them).
        a = cluster.slots[0]

        def unfinished() -> int:
            statuses = T.StatusSet(statuses=[T.TASK_STATUS_ENQUEUED, T.TASK_STATUS_PROCESSING])
            return a.tasks.ListTasks(pb.ListTasksRequest(filter=T.TaskFilter(statuses=statuses)), timeout=10).total

        wait_until(lambda: unfinished() == 0, timeout=40, what="every task finished")
        drained.set()
        for thread in threads[3:]:
            thread.join(timeout=30)
        assert abandoned, "no lease was taken through a replica before it was killed: the test checked nothing"

        # Every acknowledged task is there once: one task per key, and no other task.
        uids = sorted(acknowledged.values())
        assert len(set(uids)) == len(uids)
        listed = a.tasks.ListTasks(pb.ListTasksRequest(limit=10_000), timeout=10)
        assert sorted(t.uid for t in listed.results) == uids
        assert all(t.status == T.TASK_STATUS_SUCCEEDED for t in listed.results)
        # The abandoned leases expired (an attempt spent) and their tasks were leased again.
        by_uid = {t.uid: t for t in listed.results}
        assert all(by_uid[uid].attempts >= 1 for uid in abandoned)
        # Each watcher saw one gapless run, across the replicas it resumed on.
        assert resumed, "no watcher's replica was killed: the test checked no resumption"
        for name, sequences in watched.items():
            assert sequences, name
            assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), name
        # And the whole history: a task leased again only after its lease ended.
        events = history(a, db)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    finally:
        done.set()
        drained.set()
        for replica in cluster.slots:
            stop(replica)
