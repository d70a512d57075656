"""The worker helper: lease batches from `WorkerService`, run a handler per task, report outcomes.

    def index_documents(job):                  # plain functions run in a thread,
        ...                                    # coroutines on the event loop
        return {"indexedDocuments": 42}        # details to report, or None

    Worker("127.0.0.1:50051", {"documentAdditionOrUpdate": index_documents}).run()

While a batch runs its lease is renewed; when a cancelation stops the batch the
handler is told (`job.canceled` is set, a coroutine is cancelled) and nothing is
reported. SIGTERM/SIGINT stop leasing, let the current batch finish within the
grace period, then release what is left. A handler raising `TaskFailed` fails its
task with that error; any other exception fails it as `internal`. A failure that may
pass is retried: `TaskFailed(..., retry=True)` after the server's backoff for the task,
`Retry(after=30)` after that long; the task fails for good once its attempts are spent.

A handler may say how far it got: `job.progress("indexing", done, total)`, or nested steps as
`(name, finished, total)` tuples. The batch's progress (GET /batches/{uid}) is then the step
`("processing tasks", jobs done, jobs)` followed by the running job's steps; it rides on the lease
renewals, sent early (at most every `progress_seconds`) once a handler reported some.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2

from taskhub import channels
from taskhub.client import tracing
from taskhub.client.calls import MAX_MESSAGE, metadata, status_code, tls_credentials, to_error
from taskhub.client.models import TYPE_TO_PROTO, Task, TaskType, details_to_proto, parse_type
from taskhub.errors import TaskHubError
from taskhub.v1 import (
    batch_pb2,
    errors_pb2,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

log = logging.getLogger(__name__)

Handler = Callable[["Job"], "dict[str, Any] | Awaitable[dict[str, Any] | None] | None"]


class TaskFailed(Exception):
    """Raised by a handler to fail its task with a public error (`code` in lower_snake_case).

    `retry=True`: the failure may pass, so the task is tried again after its retry policy's backoff
    (or `after`: seconds or a timedelta), until its attempts are spent.
    """

    def __init__(
        self,
        message: str,
        code: str = "task_failed",
        type: str = "invalid_request",
        *,
        retry: bool = False,
        after: float | timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.type = message, code, type
        self.retry = retry or after is not None
        self.after = after.total_seconds() if isinstance(after, timedelta) else after


class Retry(TaskFailed):
    """Raised by a handler to try its task again later: after `after` (seconds or a timedelta), or the backoff."""

    def __init__(
        self,
        message: str = "the handler asked to try again later",
        *,
        after: float | timedelta | None = None,
        code: str = "task_retry",
        type: str = "internal",
    ) -> None:
        super().__init__(message, code, type, retry=True, after=after)


# The server's limits on a progress report (taskhub.server.batch), checked here so a renewal never carries a bad one.
MAX_STEPS, MAX_STEP_NAME_BYTES = 16, 256
# Types the server runs itself: never a worker's, so never missing a handler.
SERVER_RUN = frozenset({"taskCancelation", "taskDeletion", "snapshotCreation", "dumpCreation"})
# How often an idle worker looks for waiting tasks it has no handler for (seconds), and how many it reads.
UNHANDLED_EVERY, UNHANDLED_PAGE = 60.0, 100
Step = tuple[str, int, int]


def check_step(step: Any) -> Step:
    """One `(name, finished, total)` step, or ValueError saying what is wrong with it."""
    if not (isinstance(step, tuple) and len(step) == 3):
        raise ValueError(f"a progress step is (name, finished, total), not {step!r}")
    name, finished, total = step
    if not isinstance(name, str) or not 1 <= len(name.encode()) <= MAX_STEP_NAME_BYTES:
        raise ValueError(f"a progress step's name is a string of 1 to {MAX_STEP_NAME_BYTES} bytes, not {name!r}")
    if not (isinstance(total, int) and isinstance(finished, int)) or total < 1 or not 0 <= finished <= total:
        raise ValueError(
            f"step `{name}`: finished must be within 0..total and total at least 1, not {finished}/{total}"
        )
    return name, finished, total


class BatchProgress:
    """A batch's progress as its handlers report it (from threads), read by the lease keeper on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, jobs: int) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._outer: Step = ("processing tasks", 0, max(jobs, 1))
        self._steps: list[Step] = []
        self.version = 0
        self.reported = False  # a handler reported: renewals then go early, when it changes
        self.changed = asyncio.Event()

    def start_job(self, done: int) -> None:
        with self._lock:
            self._outer = (self._outer[0], done, self._outer[2])
            self._steps = []
            self.version += 1

    def report(self, steps: list[Step]) -> None:
        with self._lock:
            self._steps = steps
            self.version += 1
            self.reported = True
        self._loop.call_soon_threadsafe(self.changed.set)

    def snapshot(self) -> tuple[int, batch_pb2.BatchProgress]:
        with self._lock:
            steps = [self._outer, *self._steps]
            version = self.version
        message = batch_pb2.BatchProgress(
            steps=[batch_pb2.BatchProgressStep(current_step=n, finished=f, total=t) for n, f, t in steps]
        )
        return version, message


@dataclass
class Job:
    """What a handler gets: the task, and a flag set when its batch is canceled."""

    task: Task
    canceled: threading.Event = field(default_factory=threading.Event)
    _batch: BatchProgress | None = field(default=None, repr=False)
    # The enqueuer's trace context (W3C headers), when the server traces: the handler's span joins that trace.
    trace_context: dict[str, str] = field(default_factory=dict, repr=False)

    def progress(self, *steps: Any) -> None:
        """Reports how far the handler got: `progress("indexing", 30, 100)`, or several `(name, finished, total)`
        steps, outermost first. Raises ValueError on a step the server would refuse."""
        given = [tuple(steps)] if steps and isinstance(steps[0], str) else [tuple(s) for s in steps]
        checked = [check_step(s) for s in given]
        if len(checked) + 1 > MAX_STEPS:
            raise ValueError(f"at most {MAX_STEPS - 1} steps per job, not {len(checked)}")
        if self._batch is not None:
            self._batch.report(checked)

    @property
    def uid(self) -> int:
        return self.task.uid

    @property
    def index_uid(self) -> str | None:
        return self.task.index_uid

    @property
    def details(self) -> dict | None:
        return self.task.details


def _seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


class Worker:
    """Leases and runs tasks of the types it has handlers for, `concurrency` batches at a time."""

    def __init__(
        self,
        target: str,
        handlers: Mapping[TaskType | str, Handler],
        *,
        api_key: str | None = None,
        name: str | None = None,
        index_uids: list[str] | None = None,
        max_tasks: int | None = None,
        concurrency: int = 1,
        lease_seconds: float = 30.0,
        poll_seconds: float = 10.0,
        grace_seconds: float = 30.0,
        progress_seconds: float = 1.0,
        credentials: grpc.ChannelCredentials | None = None,
        tls_ca: str | None = None,
    ) -> None:
        if not handlers:
            raise ValueError("a worker needs at least one handler")
        channels.split(target)  # a bad target (one server or several) fails here, not once running
        self.target = target
        self.handlers = {parse_type(t): h for t, h in handlers.items()}
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.index_uids = index_uids
        self.max_tasks = max_tasks
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.progress_seconds = progress_seconds
        self._metadata = metadata(api_key)
        # TLS when given `credentials` or a CA file (PEM), as for the clients.
        self._credentials = credentials or tls_credentials(tls_ca)
        self.processed = 0
        self._stopping = asyncio.Event()
        # Waiting types with no handler here, warned about once each; when that was last looked at.
        self._unhandled_seen: set[str] = set()
        self._unhandled_at: float | None = None

    # -- running ----------------------------------------------------------

    def run(self) -> None:
        """Runs until SIGTERM or SIGINT (blocking)."""
        asyncio.run(self._main_with_signals())

    async def _main_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        await self.run_async()

    def stop(self) -> None:
        """Stops leasing; the batches in hand finish within the grace period or are released."""
        log.info("worker %s stopping", self.name)
        self._stopping.set()

    async def run_async(self, *, max_batches: int | None = None) -> None:
        """Leases and runs batches until `stop()` (or `max_batches` batches per loop)."""
        self._stopping = asyncio.Event()
        # One server or several replicas: a lease, renewal or report that hits UNAVAILABLE goes to
        # another, which knows the lease when the replicas share a database.
        channel = channels.aio_channel(self.target, self._credentials, message_limit=MAX_MESSAGE)
        types = sorted(str(t) for t in self.handlers)
        log.info(
            "worker %s started: leasing from %s, handling %s",
            self.name,
            self.target,
            ", ".join(types),
            extra={"event": "worker_started", "worker": self.name, "target": self.target, "types": types},
        )
        async with channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            self._tasks_stub = task_service_pb2_grpc.TaskServiceStub(channel)
            await asyncio.gather(*(self._loop(stub, max_batches) for _ in range(self.concurrency)))

    async def _loop(self, stub, max_batches: int | None) -> None:
        batches, failures = 0, 0
        while not self._stopping.is_set() and (max_batches is None or batches < max_batches):
            try:
                lease = await self._lease(stub)
                failures = 0
            except grpc.RpcError as error:
                if status_code(error) not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise to_error(error) from None
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                log.warning("server unavailable, retrying in %.1fs", delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                continue
            if lease is None:
                await self._look_for_unhandled()
                continue
            batches += 1
            await self._run_batch(stub, lease)

    async def _lease(self, stub) -> wpb.LeaseTasksResponse | None:
        request = wpb.LeaseTasksRequest(
            worker=self.name,
            wait=_seconds(self.poll_seconds),
            lease_duration=_seconds(self.lease_seconds),
            # Meilisearch's types by enum, those registered at the server (`sendEmail`) by name.
            types=task_pb2.TypeSet(
                types=[TYPE_TO_PROTO[t] for t in self.handlers if isinstance(t, TaskType)],
                type_names=[t for t in self.handlers if not isinstance(t, TaskType)],
            ),
        )
        if self.index_uids is not None:
            request.index_uids.index_uids.extend(self.index_uids)
        if self.max_tasks is not None:
            request.max_tasks = self.max_tasks
        leasing = asyncio.ensure_future(
            stub.LeaseTasks(request, metadata=self._metadata, timeout=self.poll_seconds + 10)
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((leasing, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not leasing.done():
            # Stopping: abandon the long poll. A batch it still took is released by
            # expiry; cancel() makes the server drop the call, so usually none is.
            leasing.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                response = await leasing
                if response.HasField("lease"):
                    await stub.ReleaseLease(
                        wpb.ReleaseLeaseRequest(token=response.lease.token), metadata=self._metadata, timeout=5
                    )
            return None
        response = leasing.result()
        return response if response.HasField("lease") else None

    async def _look_for_unhandled(self) -> None:
        """When idle, at most every UNHANDLED_EVERY seconds: warns once per type about waiting tasks of a type this
        worker has no handler for. It never leases them (it asks for its own types only), but the first of them
        holds its index: the tasks after it there wait too, for a worker that handles it."""
        now = time.monotonic()
        if self._unhandled_at is not None and now - self._unhandled_at < UNHANDLED_EVERY:
            return
        self._unhandled_at = now
        request = task_service_pb2.ListTasksRequest(limit=UNHANDLED_PAGE, reverse=True)
        request.filter.statuses.statuses.append(task_pb2.TaskStatus.TASK_STATUS_ENQUEUED)
        if self.index_uids is not None:
            request.filter.index_uids.index_uids.extend(self.index_uids)
        try:
            page = await self._tasks_stub.ListTasks(request, metadata=self._metadata, timeout=5)
        except grpc.RpcError as error:  # a key without `tasks.get`, a server gone: the look is only a courtesy
            log.debug("could not look for waiting tasks without a handler: %s", status_code(error))
            return
        handled = {str(t) for t in self.handlers}
        for task in page.results:
            name = task.type_name
            if name in handled or name in SERVER_RUN or name in self._unhandled_seen:
                continue
            self._unhandled_seen.add(name)
            where = f"on index `{task.index_uid}`" if task.HasField("index_uid") else "with no index"
            log.warning(
                "tasks of type %s are waiting (the oldest: task %d %s) and this worker has no handler for them:"
                " they wait, and hold the later tasks of their index, until a worker with a handler for %s runs",
                name,
                task.uid,
                where,
                name,
                extra={
                    "event": "unhandled_type",
                    "worker": self.name,
                    "type": name,
                    "uid": task.uid,
                    "index_uid": task.index_uid if task.HasField("index_uid") else None,
                },
            )

    # -- one batch --------------------------------------------------------

    async def _run_batch(self, stub, lease: wpb.LeaseTasksResponse) -> None:
        token = lease.lease.token
        progress = BatchProgress(asyncio.get_running_loop(), len(lease.tasks))
        jobs = [Job(Task.from_proto(t), _batch=progress, trace_context=dict(t.trace_context)) for t in lease.tasks]
        batch_uid = lease.lease.batch_uid
        uids = [job.uid for job in jobs]
        log.info(
            "batch %d leased: %d task%s %s",
            batch_uid,
            len(jobs),
            "" if len(jobs) == 1 else "s",
            uids,
            extra={"event": "batch_leased", "worker": self.name, "batch_uid": batch_uid, "uids": uids},
        )
        work = asyncio.ensure_future(self._run_jobs(jobs, progress))
        keeper = asyncio.ensure_future(self._keep_lease(stub, token, progress))
        stopping = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait((work, keeper, stopping), return_when=asyncio.FIRST_COMPLETED)
        if stopping in done and not work.done() and not keeper.done():
            # Asked to stop mid-batch: the batch gets the grace period to finish.
            await asyncio.wait((work, keeper), timeout=self.grace_seconds, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if work.done() and not keeper.done():
            keeper.cancel()
            await self._complete(stub, token, jobs, work.result(), batch_uid)
            return
        # Canceled, lost, or out of grace: stop the handlers and report nothing.
        for job in jobs:
            job.canceled.set()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        if keeper.done():
            log.info(
                "batch %d ended before its report: %s",
                batch_uid,
                keeper.result(),
                extra={"event": "batch_ended", "batch_uid": batch_uid, "uids": uids, "reason": keeper.result()},
            )
        else:
            keeper.cancel()
            await self._release(stub, token)

    async def _run_jobs(self, jobs: list[Job], progress: BatchProgress) -> list[wpb.TaskOutcome]:
        outcomes = []
        for done, job in enumerate(jobs):
            progress.start_job(done)
            outcomes.append(await self._run_job(job))
        return outcomes

    async def _run_job(self, job: Job) -> wpb.TaskOutcome:
        type_name = str(job.task.type)
        attributes = {"taskhub.task.uid": job.uid, "taskhub.task.type": type_name, "taskhub.worker": self.name}
        with tracing.span(f"taskhub handle {type_name}", job.trace_context, attributes) as span:
            outcome = await self._handle(job)
            if outcome.HasField("error"):
                tracing.failed(span, outcome.error.code)
        return outcome

    async def _handle(self, job: Job) -> wpb.TaskOutcome:
        handler = self.handlers[job.task.type]
        outcome = wpb.TaskOutcome(uid=job.uid)
        fields = {"worker": self.name, "uid": job.uid, "type": str(job.task.type)}
        try:
            if inspect.iscoroutinefunction(handler):
                reported = await handler(job)
            else:
                # to_thread copies the context: the handler runs within its span.
                reported = await asyncio.to_thread(handler, job)
            if reported:
                outcome.details.CopyFrom(details_to_proto(job.task.type, reported))
        except asyncio.CancelledError:
            job.canceled.set()
            raise
        except TaskFailed as failure:
            outcome.error.CopyFrom(errors_pb2.TaskError(message=failure.message, code=failure.code, type=failure.type))
            outcome.retryable = failure.retry
            if failure.after is not None:
                outcome.retry_after.CopyFrom(_seconds(max(failure.after, 0.0)))
            log.info(
                "task %d failed%s: %s: %s",
                job.uid,
                " (to be tried again)" if failure.retry else "",
                failure.code,
                failure.message,
                extra={"event": "task_failed", **fields, "code": failure.code, "retry": failure.retry},
            )
        except Exception as exc:  # a handler's bug fails its task, not the worker
            log.exception(
                "handler for task %d failed",
                job.uid,
                extra={"event": "task_failed", **fields, "code": "internal", "retry": False},
            )
            outcome.error.CopyFrom(
                errors_pb2.TaskError(message=f"{type(exc).__name__}: {exc}", code="internal", type="internal")
            )
        return outcome

    async def _keep_lease(self, stub, token: str, progress: BatchProgress) -> str:
        """Renews the lease until cancelled, every third of its duration, and early (at most every
        `progress_seconds`) once a handler reported progress that changed since; answers why the batch ended
        if it did (`canceled`, `lost`)."""
        loop = asyncio.get_running_loop()
        last, sent = loop.time(), 0
        while True:
            await self._until_renewal(progress, last, sent)
            request = wpb.RenewLeaseRequest(token=token)
            version = sent
            if progress.version != sent:
                version, message = progress.snapshot()
                request.progress.CopyFrom(message)
            last = loop.time()
            try:
                renewed = await stub.RenewLease(request, metadata=self._metadata, timeout=self.lease_seconds / 3)
                sent = version
            except grpc.RpcError as error:
                if to_error(error).code == "lease_lost":
                    return "lost"
                continue  # a blip: the next renewal may still make it in time
            if renewed.canceled:
                return "canceled"

    async def _until_renewal(self, progress: BatchProgress, last: float, sent: int) -> None:
        """Waits until a third of the lease went by since `last`, or a reported change is due to be sent."""
        loop = asyncio.get_running_loop()
        while True:
            progress.changed.clear()
            early = progress.reported and progress.version != sent
            due = last + (min(self.lease_seconds / 3, self.progress_seconds) if early else self.lease_seconds / 3)
            remaining = due - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await progress.changed.wait()

    async def _complete(
        self, stub, token: str, jobs: list[Job], outcomes: list[wpb.TaskOutcome], batch_uid: int
    ) -> None:
        # A batch from one trace reports within it (the report's RPC spans join it); the server records each
        # task's completion in its own trace anyway.
        contexts = {tuple(sorted(job.trace_context.items())) for job in jobs}
        shared = dict(next(iter(contexts))) if len(contexts) == 1 else {}
        try:
            with tracing.within(shared):
                await stub.CompleteTasks(
                    wpb.CompleteTasksRequest(token=token, outcomes=outcomes), metadata=self._metadata, timeout=30
                )
            self.processed += len(jobs)
        except grpc.RpcError as error:
            failure = to_error(error)
            if failure.code not in ("lease_lost", "unavailable"):
                raise failure from None
            # The server put the tasks back (or will, at expiry); they run again. Its message names the lease by
            # its token, a secret: the code says enough.
            log.warning(
                "report of batch %d refused (%s): its tasks run again",
                batch_uid,
                failure.code,
                extra={"event": "report_refused", "batch_uid": batch_uid, "code": failure.code},
            )
            return
        failed = sum(1 for outcome in outcomes if outcome.HasField("error"))
        log.info(
            "batch %d reported: %d succeeded, %d failed",
            batch_uid,
            len(outcomes) - failed,
            failed,
            extra={
                "event": "batch_reported",
                "worker": self.name,
                "batch_uid": batch_uid,
                "uids": [job.uid for job in jobs],
                "failed": failed,
            },
        )

    async def _release(self, stub, token: str) -> None:
        with contextlib.suppress(grpc.RpcError, TaskHubError):
            await stub.ReleaseLease(wpb.ReleaseLeaseRequest(token=token), metadata=self._metadata, timeout=5)
