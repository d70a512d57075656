"""Replicas: several `taskhub serve` processes on one PostgreSQL database, any of them answering any call.

Real subprocesses on one throwaway cluster. What one replica acknowledges, another finds;
watch cursors and changes cross replicas; a key deleted on one is refused on the next call
to another; leases and server-run work happen once whichever replicas race for them; and a
leader stopped by SIGSTOP loses its term to another and, resumed, runs none of the work it lost.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import signal
import subprocess
import sys
import threading
import time

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2

from taskhub.v1 import (
    key_service_pb2 as kpb,
    key_service_pb2_grpc,
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # starts, stops and signals `taskhub serve` subprocesses

T = task_pb2
MASTER_KEY = "a-master-key-of-sixteen-bytes-or-more"
_databases = iter(range(1_000_000))


@dataclasses.dataclass
class Replica:
    """One `taskhub serve` process and its stubs."""

    name: str
    proc: subprocess.Popen
    target: str
    log: pathlib.Path
    channel: grpc.Channel

    @property
    def tasks(self) -> task_service_pb2_grpc.TaskServiceStub:
        return task_service_pb2_grpc.TaskServiceStub(self.channel)

    @property
    def workers(self) -> worker_service_pb2_grpc.WorkerServiceStub:
        return worker_service_pb2_grpc.WorkerServiceStub(self.channel)

    @property
    def keys(self) -> key_service_pb2_grpc.KeyServiceStub:
        return key_service_pb2_grpc.KeyServiceStub(self.channel)

    def output(self) -> str:
        return self.log.read_text()


def spawn(db: str, name: str, folder: pathlib.Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Starts `taskhub serve` as replica `name`; answers the process and its gRPC target (not serving yet)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            db,
            "--replica-name",
            name,
            "--grpc-listen",
            f"127.0.0.1:{port}",
            "--no-http",
            "--grace-seconds",
            "1",
            "--snapshots-dir",
            str(folder / "snapshots"),
            "--dumps-dir",
            str(folder / "dumps"),
            *extra,
        ],
        stdout=(folder / f"{name}.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    return proc, f"127.0.0.1:{port}"


def serving(proc: subprocess.Popen, target: str, name: str, folder: pathlib.Path) -> Replica:
    """The replica once it serves (killed if it never does)."""
    try:
        channel = wait_serving(target)
    except BaseException:
        proc.kill()
        raise
    return Replica(name, proc, target, folder / f"{name}.log", channel)


def serve(db: str, name: str, folder: pathlib.Path, *extra: str) -> Replica:
    return serving(*spawn(db, name, folder, *extra), name, folder)


def stop(replica: Replica) -> None:
    replica.channel.close()
    if replica.proc.poll() is None:
        replica.proc.send_signal(signal.SIGCONT)  # a stopped process would never see the SIGTERM
        replica.proc.send_signal(signal.SIGTERM)
    try:
        replica.proc.wait(timeout=20)
    finally:
        if replica.proc.poll() is None:
            replica.proc.kill()
            replica.proc.wait()


@pytest.fixture
def db(postgres_cluster) -> str:
    return postgres_cluster.create_database(f"replicas_{next(_databases)}")


@pytest.fixture
def replicas(db, tmp_path):
    """Starts replicas by name (`replicas("a", "b")`); stops every one at the end."""
    started: list[Replica] = []

    def start(*names: str, extra: tuple[str, ...] = ()) -> list[Replica]:
        for name in names:
            started.append(serve(db, name, tmp_path, *extra))
        return started[-len(names) :]

    yield start
    for replica in started:
        stop(replica)


def leader(db: str) -> tuple[str, int]:
    """The leader row, read as an operator would: (name, term)."""
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute("SELECT name, term FROM leader").fetchone()
    return ("", 0) if row is None else (row[0], row[1])


def wait_until(condition, timeout: float = 20, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(0.05)


def enqueue(stub, index_uid: str = "movies", metadata=(), **fields) -> int:
    details = T.TaskDetails()
    details.document_addition_or_update.received_documents = 1
    request = pb.EnqueueTaskRequest(
        type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=index_uid, details=details, **fields
    )
    return stub.EnqueueTask(request, metadata=metadata, timeout=10).task.task_uid


def cancel(stub, uid: int) -> int:
    request = pb.CancelTasksRequest(filter=T.TaskFilter(uids=T.UidSet(uids=[uid])))
    return stub.CancelTasks(request, timeout=10).task.task_uid


def watch(stub, after: int | None = None):
    request = pb.WatchTasksRequest()
    if after is not None:
        request.after = after
    return stub.WatchTasks(request)


def lease(workers, worker: str, *, seconds: int = 60, wait: float = 0, max_tasks: int = 100):
    request = wpb.LeaseTasksRequest(
        worker=worker,
        lease_duration=duration_pb2.Duration(seconds=seconds),
        wait=duration_pb2.Duration(nanos=int(wait * 1e9)),
        max_tasks=max_tasks,
    )
    answer = workers.LeaseTasks(request, timeout=wait + 10)
    return answer if answer.tasks else None


def complete(workers, answer) -> None:
    outcomes = [wpb.TaskOutcome(uid=t.uid) for t in answer.tasks]
    workers.CompleteTasks(wpb.CompleteTasksRequest(token=answer.lease.token, outcomes=outcomes), timeout=10)


def test_replicas_starting_at_once_on_a_new_database_migrate_it_once_and_all_serve(db, tmp_path):
    spawned = {f"r{i}": spawn(db, f"r{i}", tmp_path) for i in range(3)}  # all at once, before any serves
    started = []
    try:
        for name, (proc, target) in spawned.items():
            started.append(serving(proc, target, name, tmp_path))
        assert [enqueue(r.tasks) for r in started] == [0, 1, 2]
        assert leader(db)[1] == 1  # one of them took the first term; the others follow it
    finally:
        for replica in started:
            stop(replica)
        for proc, _ in spawned.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_what_one_replica_acknowledges_another_finds_and_counts(replicas):
    a, b = replicas("a", "b")
    uids = [enqueue(a.tasks) for _ in range(3)] + [enqueue(b.tasks, "books")]
    assert uids == [0, 1, 2, 3]  # one counter for the database, whichever replica took the call
    for uid in uids:
        assert b.tasks.GetTask(pb.GetTaskRequest(uid=uid), timeout=10).task.uid == uid
        assert a.tasks.GetTask(pb.GetTaskRequest(uid=uid), timeout=10).task.uid == uid
    uid = enqueue(a.tasks)
    # Right after A's acknowledgement, B's list holds it: B takes the commits made before the call.
    listed = b.tasks.ListTasks(pb.ListTasksRequest(), timeout=10)
    assert (listed.total, listed.results[0].uid) == (5, uid)
    movies = b.tasks.ListTasks(
        pb.ListTasksRequest(filter=T.TaskFilter(index_uids=T.IndexUidSet(index_uids=["movies"])))
    )
    assert movies.total == 4


def test_a_watch_cursor_from_one_replica_resumes_on_another_with_no_gap_and_no_duplicate(replicas):
    a, b = replicas("a", "b")
    on_a = watch(a.tasks)
    time.sleep(0.5)  # the watch is subscribed; changes from here on reach it
    for _ in range(3):
        enqueue(a.tasks)
    seen = [next(on_a) for _ in range(2)]
    on_a.cancel()
    for _ in range(2):
        enqueue(b.tasks)
    enqueue(a.tasks)
    resumed = watch(b.tasks, after=seen[-1].sequence)
    rest = [next(resumed) for _ in range(4)]
    resumed.cancel()
    sequences = [e.sequence for e in seen + rest]
    assert sequences == list(range(sequences[0], sequences[0] + 6))
    assert [e.task.uid for e in seen + rest] == [0, 1, 2, 3, 4, 5]


def test_a_change_on_one_replica_reaches_a_watcher_on_another(replicas):
    a, b = replicas("a", "b")
    on_b = watch(b.tasks)
    time.sleep(0.5)
    uid = enqueue(a.tasks)
    event = next(on_b)
    assert (event.task.uid, event.task.status) == (uid, T.TASK_STATUS_ENQUEUED)
    answer = lease(a.workers, "w")
    complete(a.workers, answer)
    assert [next(on_b).task.status for _ in range(2)] == [T.TASK_STATUS_PROCESSING, T.TASK_STATUS_SUCCEEDED]
    on_b.cancel()


def test_a_key_deleted_on_one_replica_is_refused_on_the_next_call_to_another(replicas):
    a, b = replicas("a", "b", extra=("--master-key", MASTER_KEY))
    master = (("authorization", f"Bearer {MASTER_KEY}"),)
    created = a.keys.CreateKey(kpb.CreateKeyRequest(actions=["*"], indexes=["*"]), metadata=master, timeout=10).key
    with_key = (("authorization", f"Bearer {created.key}"),)
    assert enqueue(b.tasks, metadata=with_key) == 0  # made on A, taken on B at once
    a.keys.DeleteKey(kpb.DeleteKeyRequest(key=created.uid), metadata=master, timeout=10)
    with pytest.raises(grpc.RpcError) as refused:
        enqueue(b.tasks, metadata=with_key)
    assert (refused.value.code(), refused.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "The provided API key is invalid.",
    )
    listed = b.keys.ListKeys(kpb.ListKeysRequest(), metadata=master, timeout=10)
    assert created.uid not in [k.uid for k in listed.results]


def test_a_task_type_registered_by_one_replica_is_known_to_another(db, tmp_path):
    a = serve(db, "a", tmp_path)
    try:
        b = serve(db, "b", tmp_path, "--task-types", "sendEmail")  # registered after A started
        try:
            request = pb.EnqueueTaskRequest(type_name="sendEmail", details=T.TaskDetails(custom_json='{"to":"x"}'))
            uid = b.tasks.EnqueueTask(request, timeout=10).task.task_uid
            # A filters on it and shows it, though it never registered it.
            only = T.TaskFilter(types=T.TypeSet(type_names=["sendEmail"]))
            listed = a.tasks.ListTasks(pb.ListTasksRequest(filter=only), timeout=10)
            assert ([t.uid for t in listed.results], listed.results[0].type_name) == ([uid], "sendEmail")
            # Enqueuing it stays B's: A was not started with it.
            with pytest.raises(grpc.RpcError) as refused:
                a.tasks.EnqueueTask(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            stop(b)
    finally:
        stop(a)


def test_pruning_keeps_the_changes_a_stopped_replica_has_not_followed(db, tmp_path):
    a = serve(db, "a", tmp_path, "--watch-retention", "5")
    b = serve(db, "b", tmp_path)
    try:
        for _ in range(10):
            enqueue(a.tasks)
        b_list = b.tasks.ListTasks(pb.ListTasksRequest(), timeout=10)  # B has followed the 10 changes
        assert b_list.total == 10
        time.sleep(1.5)  # and reported it (every second)
        b.proc.send_signal(signal.SIGSTOP)
        for _ in range(30):
            enqueue(a.tasks)

        def pruned() -> bool:  # the leader prunes every 10 s: the changes B had followed go
            try:
                next(watch(a.tasks, after=0))
            except grpc.RpcError as error:
                return error.code() == grpc.StatusCode.OUT_OF_RANGE
            return False

        wait_until(pruned, timeout=30, what="a pruning")
        # The retention alone would keep 5 changes: those B has not followed (11 to 40) are all there.
        resumed = watch(a.tasks, after=10)
        assert [next(resumed).sequence for _ in range(30)] == list(range(11, 41))
        resumed.cancel()
        b.proc.send_signal(signal.SIGCONT)
        assert b.tasks.ListTasks(pb.ListTasksRequest(), timeout=10).total == 40
        assert "reading every task again" not in b.output()
    finally:
        stop(b)
        stop(a)


def test_one_batch_per_index_across_replicas_with_two_competing_workers(replicas):
    a, b = replicas("a", "b")
    for i in range(40):
        enqueue((a if i % 2 else b).tasks, f"index{i % 4}")
    holding: dict[str, str] = {}  # index -> worker holding a batch of it
    guard = threading.Lock()
    overlaps: list[str] = []
    done: list[int] = []

    def work(replica: Replica, worker: str) -> None:
        while True:
            answer = lease(replica.workers, worker, max_tasks=3)
            if answer is None:
                with guard:
                    if len(done) == 40:
                        return
                time.sleep(0.01)
                continue
            indexes = {t.index_uid for t in answer.tasks}
            with guard:
                for index in indexes:
                    if index in holding:
                        overlaps.append(f"{index}: {holding[index]} and {worker}")
                    holding[index] = worker
            time.sleep(0.02)  # the batch runs
            with guard:
                for index in indexes:
                    holding.pop(index, None)
                done.extend(t.uid for t in answer.tasks)
            complete(replica.workers, answer)

    threads = [threading.Thread(target=work, args=(r, f"w-{r.name}")) for r in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not overlaps
    assert sorted(done) == list(range(40))


def test_the_leader_stopped_loses_its_term_and_resumed_runs_nothing_it_lost(replicas, db):
    a, b, c = replicas("a", "b", "c")
    assert leader(db) == ("a", 1)  # the first to start leads
    a.proc.send_signal(signal.SIGSTOP)
    try:
        name, term = wait_until(lambda: leader(db) if leader(db)[0] != "a" else None, what="a takeover")
        assert (name in ("b", "c"), term) == (True, 2)
        # Server-run work goes on under the new leader while the old one is stopped.
        target = enqueue(b.tasks)
        cancelation = cancel(c.tasks, target)
        wait_until(
            lambda: b.tasks.GetTask(pb.GetTaskRequest(uid=cancelation)).task.status == T.TASK_STATUS_SUCCEEDED,
            what="the cancelation",
        )
        a.proc.send_signal(signal.SIGCONT)
        # More server-run work the resumed old leader would find, had it kept its term.
        second = cancel(a.tasks, enqueue(a.tasks))
        wait_until(
            lambda: a.tasks.GetTask(pb.GetTaskRequest(uid=second)).task.status == T.TASK_STATUS_SUCCEEDED,
            what="the second cancelation",
        )
        wait_until(lambda: "no longer leads" in a.output(), what="a's learning it lost the lead")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert leader(db) == (name, term)  # nobody took the lead back
    # Every server-run task ran once: one start and one end each, in the whole history.
    events = history(b, db)
    for uid in (cancelation, second):
        statuses = [e.task.status for e in events if e.task.uid == uid]
        assert statuses == [T.TASK_STATUS_ENQUEUED, T.TASK_STATUS_PROCESSING, T.TASK_STATUS_SUCCEEDED]
    assert "(it led in term 1)" in a.output()


def test_replicas_racing_for_leases_and_server_run_work_do_each_once(replicas, db):
    a, b = replicas("a", "b")
    stubs = [a, b]
    uids = [enqueue(stubs[i % 2].tasks, f"i{i % 3}") for i in range(30)]
    # Cancelations of some of them, asked of both replicas, while two workers race for the rest.
    cancelations = [cancel(stubs[i % 2].tasks, uid) for i, uid in enumerate(uids[::5])]
    leased: list[int] = []
    guard = threading.Lock()

    def work(replica: Replica) -> None:
        for _ in range(200):
            answer = lease(replica.workers, f"w-{replica.name}", max_tasks=4)
            if answer is None:
                time.sleep(0.02)
                continue
            with guard:
                leased.extend(t.uid for t in answer.tasks)
            try:
                complete(replica.workers, answer)
            except grpc.RpcError as error:  # a cancelation stopped the batch meanwhile
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error

    threads = [threading.Thread(target=work, args=(r,)) for r in stubs]
    for thread in threads:
        thread.start()

    def settled() -> bool:
        listed = a.tasks.ListTasks(
            pb.ListTasksRequest(
                filter=T.TaskFilter(statuses=T.StatusSet(statuses=[T.TASK_STATUS_ENQUEUED, T.TASK_STATUS_PROCESSING]))
            )
        )
        return listed.total == 0

    wait_until(settled, timeout=40, what="every task finished")
    for thread in threads:
        thread.join(timeout=30)
    assert set(leased) >= set(uids) - set(uids[::5])
    events = history(b, db)
    for uid in cancelations:
        statuses = [e.task.status for e in events if e.task.uid == uid]
        assert statuses == [T.TASK_STATUS_ENQUEUED, T.TASK_STATUS_PROCESSING, T.TASK_STATUS_SUCCEEDED]
    for uid in uids:
        # Leased by one lease at a time: a task leased again went back to enqueued first (a cancelation
        # stops a leased batch whole, and its other tasks go back), and it ended once.
        statuses = [e.task.status for e in events if e.task.uid == uid]
        assert all(
            not (before == after == T.TASK_STATUS_PROCESSING) for before, after in itertools.pairwise(statuses)
        ), statuses
        assert statuses.count(T.TASK_STATUS_SUCCEEDED) + statuses.count(T.TASK_STATUS_CANCELED) == 1, statuses
        assert leased.count(uid) == statuses.count(T.TASK_STATUS_PROCESSING)


def history(replica: Replica, db: str) -> list[pb.WatchTasksResponse]:
    """Every change in the log up to its newest now, watched from the start through `replica`."""
    with psycopg.connect(db, autocommit=True) as conn:  # the log's head, read as an operator would
        newest = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
    stream = watch(replica.tasks, after=0)
    events: list[pb.WatchTasksResponse] = []
    try:
        while not events or events[-1].sequence < newest:
            events.append(next(stream))
    finally:
        stream.cancel()
    return events
