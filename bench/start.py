"""Start time: how soon `taskhub serve` answers a filtered ListTasks (with its total) and a LeaseTasks.

    .venv/bin/python bench/start.py                                        # 100,000 tasks
    .venv/bin/python bench/start.py --tasks 10000000 --db-dir /tmp/taskhub-bench

Three starts of the real server, one after the other, on one copy of a `load_tasks.py`
database (a server writes on start, so the loaded file stays as it was):
1. no saved index: the index is built from the stored rows (the baseline);
2. after a clean stop (SIGTERM), which saved the index beside the database (`<db>.index`);
3. after `--enqueue` tasks came over gRPC and the server was killed (SIGKILL): the index of
   the clean stop, then the change log since.
Each start is timed from the spawn of the process (interpreter and imports included) until a
ListTasks (statuses=enqueued, indexUids=`--index`) answers, then until a LeaseTasks (wait 0)
answers; both are polled until the port takes calls. The total must be the SQL count on the
copy, taken before the start while no server runs: that index's enqueued and processing tasks
(a start puts processing tasks back to enqueued), so the tasks enqueued before the kill are in
it. The server's log says how its index was made; starts 2 and 3 must not read every row.
Any of these going wrong prints `check: BROKEN` and exits 1. The clean stop is timed too
(SIGTERM to exit, the save included), with the saved file's size.
Target: starts 2 and 3 answer both within 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

import harness
import load_tasks
from taskhub.server.index.memory import BUILD_CHUNK
from taskhub.server.model import TaskStatus as S
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

BUILT = "building the index from"  # what the server logs when it reads every stored task
LISTENING = "gRPC listening on"
TARGET = 5.0  # seconds, issue 20's "start fast"
# A refused connection puts a gRPC channel into reconnect backoff (1 s and growing by default):
# short backoffs keep the polling close to the moment the port opens.
POLL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 10),
    ("grpc.min_reconnect_backoff_ms", 10),
    ("grpc.max_reconnect_backoff_ms", 50),
]


class Spawned(harness.Server):
    """harness's `taskhub serve`, not waited for: the caller times its first answers from the spawn."""

    def wait_ready(self, timeout: float = 60) -> None:
        pass


@contextlib.contextmanager
def child_stderr(path: Path) -> Iterator[None]:
    """Processes spawned meanwhile write their stderr (the server's log) to `path`.

    harness starts the server with this process's stderr; pointing file descriptor 2 elsewhere
    for the spawn is how its log is kept apart without a second way to start it.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class Start:
    name: str
    listed: float  # seconds from the spawn to ListTasks' answer
    leased: float  # ... to LeaseTasks' answer, after it
    total: int
    expected: int
    built: bool  # the server read every stored task
    listening: float | None  # seconds from the spawn to the log's "listening" line
    rss: float  # MiB, right after the answers


def waiting(index_uid: str, db: Path) -> int:
    """The SQL count the start's ListTasks total must equal: the index's enqueued and processing tasks."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM tasks WHERE index_uid = ? AND status IN (?, ?)",
            (index_uid, int(S.ENQUEUED), int(S.PROCESSING)),
        ).fetchone()[0]


def stored(db: Path) -> int:
    """How many tasks the database holds, by its own counter."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'task_count'").fetchone()[0])


def poll(server: harness.Server, call, deadline: float):
    """`call()` until the server takes calls (a refused connection is UNAVAILABLE)."""
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode} before answering")
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def logged_at(lines: list[str], text: str) -> float | None:
    """The wall-clock time of the first log line holding `text` (logging's default asctime, to the ms)."""
    for line in lines:
        if text in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def start(name: str, db: Path, index_uid: str, log: Path, timeout: float, *extra: str) -> tuple[Start, Spawned]:
    """Spawns a server on `db` and times its first ListTasks and LeaseTasks answers; it is left running."""
    # Below BUILD_CHUNK tasks the server logs its build at DEBUG; above, DEBUG adds gRPC's lines to every call.
    level = "INFO" if stored(db) >= BUILD_CHUNK else "DEBUG"
    expected = waiting(index_uid, db)
    mark = log.stat().st_size if log.exists() else 0
    listing = pb.ListTasksRequest(
        filter=task_pb2.TaskFilter(
            statuses=task_pb2.StatusSet(statuses=[S.ENQUEUED]),
            index_uids=task_pb2.IndexUidSet(index_uids=[index_uid]),
        ),
        limit=20,
    )
    lease = wpb.LeaseTasksRequest(worker="bench-start", wait=duration_pb2.Duration(), max_tasks=1)
    deadline = time.monotonic() + timeout
    spawned, wall = time.perf_counter(), time.time()
    with child_stderr(log):
        server = Spawned(db, *extra, log_level=level)
    with grpc.insecure_channel(server.target, options=POLL_OPTIONS) as channel:
        tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        page = poll(server, lambda: tasks.ListTasks(listing, timeout=timeout), deadline)
        listed = time.perf_counter() - spawned
        worker_service_pb2_grpc.WorkerServiceStub(channel).LeaseTasks(lease, timeout=timeout)
        leased = time.perf_counter() - spawned
    rss = harness.rss_mib(server.pid)
    lines = log.read_text(errors="replace")[mark:].splitlines()
    built = any(BUILT in line for line in lines)
    listening = logged_at(lines, LISTENING)
    since = None if listening is None else listening - wall
    return Start(name, listed, leased, page.total, expected, built, since, rss), server


def enqueue(target: str, index_uid: str, count: int, batch: int = 500) -> int:
    """`count` tasks into `index_uid` with EnqueueTasks; answers how many were acknowledged."""
    done = 0
    with grpc.insecure_channel(target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        for first in range(0, count, batch):
            request = pb.EnqueueTasksRequest()
            for _ in range(min(batch, count - first)):
                task = request.tasks.add(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid=index_uid)
                task.details.document_addition_or_update.received_documents = 1
            done += len(stub.EnqueueTasks(request, timeout=60).tasks)
    return done


def clean_stop(server: harness.Server, timeout: float) -> tuple[float, int | None]:
    """SIGTERM, then the wait for the exit (the index is saved on the way out); seconds and exit code."""
    began = time.perf_counter()
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        code = None
    return time.perf_counter() - began, code


def show(start: Start) -> None:
    how = "built from the rows" if start.built else "the saved index"
    listening = "?" if start.listening is None else f"{start.listening:.2f} s"
    harness.figure(
        start.name,
        f"ListTasks {start.listed:6.2f} s, LeaseTasks {start.leased:6.2f} s  (listening at {listening};"
        f" total {start.total:,}; index: {how}; RSS {start.rss:,.0f} MiB)",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks stored (default 100,000)")
    parser.add_argument("--db-dir", help="keep and reuse the loaded database here (default: a temporary folder)")
    parser.add_argument("--index", default="index-01", help="the index uid ListTasks filters on and tasks go to")
    parser.add_argument("--enqueue", type=int, default=5_000, help="tasks enqueued before the SIGKILL")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a start or stop may take at most")
    args = parser.parse_args()
    # The automatic cleanup (at 1,000,000 tasks by default) would delete tasks between the counts.
    no_cleanup = ("--cleanup-threshold", str(2**40))

    with harness.scratch_dir(args.db_dir) as db_dir, tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        db = load_tasks.ensure(db_dir, args.tasks)
        copy, log = Path(tmp) / "copy.db", Path(tmp) / "server.log"
        began = time.perf_counter()
        shutil.copyfile(db, copy)
        size = copy.stat().st_size / 2**20
        print(
            f"start of taskhub serve at {args.tasks:,} tasks ({size:,.0f} MiB, copied in"
            f" {time.perf_counter() - began:.1f}s; page cache warm)",
            flush=True,
        )
        saved = Path(str(copy) + ".index")
        servers: list[harness.Server] = []
        try:
            first, server = start("1: no saved index", copy, args.index, log, args.timeout, *no_cleanup)
            servers.append(server)
            stopped, code = clean_stop(server, args.timeout)
            index_mib = saved.stat().st_size / 2**20 if saved.exists() else 0.0
            second, server = start("2: after a clean stop", copy, args.index, log, args.timeout, *no_cleanup)
            servers.append(server)
            enqueued = enqueue(server.target, args.index, args.enqueue)
            server.process.kill()  # SIGKILL: nothing saved on the way out
            server.process.wait()
            third, server = start("3: after SIGKILL", copy, args.index, log, args.timeout, *no_cleanup)
            servers.append(server)
            last_stop, last_code = clean_stop(server, args.timeout)
        except BaseException:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            for server in servers:
                server.stop()
                shutil.rmtree(server.workdir, ignore_errors=True)

        problems = []
        for one, built in ((first, True), (second, False), (third, False)):
            if one.total != one.expected:
                problems.append(f"start {one.name}: total {one.total:,}, the SQL count is {one.expected:,}")
            if one.built != built:
                problems.append(f"start {one.name}: the index was {'' if one.built else 'not '}built from the rows")
        if enqueued != args.enqueue or third.expected != second.expected + enqueued:
            problems.append(
                f"{enqueued:,} of {args.enqueue:,} enqueues acknowledged; the SQL count went from"
                f" {second.expected:,} to {third.expected:,} over the SIGKILL"
            )
        for code_ in (code, last_code):
            if code_ != 0:
                problems.append(f"a clean stop exited with {code_}")
        if problems:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)

    show(first)
    harness.figure(
        "clean stop (SIGTERM to exit)", f"{stopped:6.2f} s, then {last_stop:.2f} s; index file {index_mib:,.0f} MiB"
    )
    show(second)
    harness.figure("enqueued before the SIGKILL", f"{enqueued:,} tasks into {args.index}")
    show(third)
    print(
        "check:", "OK (totals equal the SQL counts; starts 2 and 3 read the saved index)" if not problems else "BROKEN"
    )
    for problem in problems:
        print("  -", problem)
    two, three = max(second.listed, second.leased), max(third.listed, third.leased)
    one = max(first.listed, first.leased)
    harness.ratio_line("start after a clean stop / with no saved index", two / one, "(information)", True)
    harness.ratio_line("start after SIGKILL / with no saved index", three / one, "(information)", True)
    harness.target_line("start after a clean stop", f"{two:.2f} s", f"<= {TARGET:g} s", two <= TARGET)
    harness.target_line("start after SIGKILL", f"{three:.2f} s", f"<= {TARGET:g} s", three <= TARGET)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
