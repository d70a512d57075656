"""What the sync and async clients share: defaults, the error edge, and following a watch.

Both clients map every `grpc.RpcError` through `to_error()` exactly once. Unary calls are
retried by gRPC itself (the channel's service config, `taskhub.channels`: only the calls safe
to send twice, only on UNAVAILABLE); a watch is followed across broken streams here, by one
`Resubscriber` (one task) or `Resumer` (a filter), as gRPC cannot resume a stream. So their
behaviour cannot drift apart, and no call is retried by both.
"""

from __future__ import annotations

import pathlib
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from taskhub import retry_policy
from taskhub.channels import DEFAULT_RETRY as DEFAULT_RETRY, NO_RETRY as NO_RETRY, RetryPolicy as RetryPolicy
from taskhub.client.filters import TaskFilter
from taskhub.client.models import TYPE_TO_PROTO, Task, TaskChange, TaskType, details_to_proto, parse_type
from taskhub.errors import TaskHubError, from_rpc_error
from taskhub.metadata import watch_cursor
from taskhub.v1 import task_service_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
MAX_MESSAGE = 64 * 1024 * 1024
# DEFAULT_RETRY, NO_RETRY and RetryPolicy are re-exported from taskhub.channels: one policy for every channel.


class TaskTimeoutError(TaskHubError, TimeoutError):
    """`wait_for_task` gave up: code `timeout`; also catchable as the built-in `TimeoutError`."""

    def __init__(self, uid: int, timeout: float) -> None:
        super().__init__("timeout", f"Task `{uid}` did not reach a terminal status within {timeout:g} seconds.")
        self.uid = uid
        self.timeout = timeout


def tls_credentials(tls_ca: str | pathlib.Path | None) -> grpc.ChannelCredentials | None:
    """TLS trusting the CA certificates (PEM) in the file `tls_ca`; None for plaintext.

    The file is read now, so a wrong path fails here rather than as UNAVAILABLE later.
    """
    if tls_ca is None:
        return None
    try:
        roots = pathlib.Path(tls_ca).read_bytes()
    except OSError as error:
        raise OSError(f"cannot read the TLS CA file {tls_ca}: {error.strerror or error}") from None
    return grpc.ssl_channel_credentials(root_certificates=roots)


def metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def status_code(error: grpc.RpcError) -> grpc.StatusCode | None:
    # Duck-typed: grpc.aio's AioRpcError has code() but is not a grpc.Call.
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def to_error(error: grpc.RpcError) -> TaskHubError:
    """The one place a raw gRPC error becomes the public `TaskHubError`."""
    return from_rpc_error(error)


def retry_delay(policy: RetryPolicy, attempt: int, error: grpc.RpcError) -> float:
    """How long to wait before resuming a watch; raises the mapped error when it must not be resumed."""
    delay = policy.backoff(attempt) if status_code(error) == grpc.StatusCode.UNAVAILABLE else None
    if delay is None:
        raise to_error(error) from error
    return delay


def idempotency_key_for(given: str | None) -> str:
    """The key an enqueue sends: the caller's, or one of our own, made once per call. gRPC sends the same request
    on each of its retries, so a retry after UNAVAILABLE (whose first attempt may have been stored, on this replica
    or another on the same database) never makes a second task."""
    return given if given is not None else uuid.uuid4().hex


def enqueue_request(
    type: TaskType | str,
    index_uid: str | None = None,
    details: dict | None = None,
    custom_metadata: str | None = None,
    run_at: datetime | None = None,
    retry: dict[str, Any] | None = None,
    *,
    delay: timedelta | float | None = None,
) -> pb.EnqueueTaskRequest:
    """One enqueue: Meilisearch's types by their enum, a registered type (`sendEmail`) by name. `run_at` (an
    aware datetime) or `delay` (from now, by this machine's clock) delays it; `retry` is its own retry policy, as
    the HTTP body's `retry` object."""
    type_ = parse_type(type)
    if isinstance(type_, TaskType):
        request = pb.EnqueueTaskRequest(type=TYPE_TO_PROTO[type_], index_uid=index_uid)
    else:
        request = pb.EnqueueTaskRequest(type_name=type_, index_uid=index_uid)
    if custom_metadata is not None:
        request.custom_metadata = custom_metadata
    proto_details = details_to_proto(type_, details)
    if proto_details is not None:
        request.details.CopyFrom(proto_details)
    if run_at is not None and delay is not None:
        raise TaskHubError("invalid_task_run_at", "Give `run_at` or `delay`, not both.")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        run_at = datetime.now(UTC) + timedelta(seconds=seconds)
    if run_at is not None:
        if run_at.tzinfo is None:
            raise TaskHubError("invalid_task_run_at", "`run_at` must be an aware datetime (with a time zone).")
        request.run_at.FromDatetime(run_at)
    if retry is not None:
        request.retry.CopyFrom(retry_policy.policy(retry))
    return request


def enqueue_tasks_request(tasks: Iterable[Sequence[Any]]) -> pb.EnqueueTasksRequest:
    """Each task as `enqueue` takes it: `(type, index_uid, details, custom_metadata, run_at, retry)`, all but the type
    optional."""
    request = pb.EnqueueTasksRequest()
    for position, task in enumerate(tasks):
        try:
            request.tasks.append(enqueue_request(*task))
        except TaskHubError as error:
            raise error.within(f"tasks[{position}]") from None
    return request


def list_request(filter: TaskFilter, limit: int | None, from_: int | None, reverse: bool) -> pb.ListTasksRequest:
    request = pb.ListTasksRequest(filter=filter.to_proto(), limit=limit, reverse=reverse)
    if from_ is not None:
        setattr(request, "from", from_)  # `from` is a Python keyword
    return request


def batches_request(filter: TaskFilter, limit: int | None, from_: int | None, reverse: bool) -> pb.ListBatchesRequest:
    request = pb.ListBatchesRequest(filter=filter.to_proto(), limit=limit, reverse=reverse)
    if from_ is not None:
        setattr(request, "from", from_)  # `from` is a Python keyword
    return request


class Resubscriber:
    """Follows one task's watch across broken streams: skips repeats, backs off, keeps the deadline.

    A fresh subscription starts with the task's current state, which the caller
    may already have seen; `fresh()` drops such repeats.
    """

    def __init__(self, uid: int, policy: RetryPolicy, timeout: float | None) -> None:
        self.uid = uid
        self.policy = policy
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.attempt = 0
        self.last: Task | None = None

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None without one); raises `TaskTimeoutError` once past it."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TaskTimeoutError(self.uid, self.timeout)
        return left

    def fresh(self, task: Task) -> bool:
        """True when `task` is a state the caller has not seen yet."""
        if task == self.last:
            return False
        # Progress: a later break starts a new backoff. Only progress counts, so a
        # server that keeps ending streams without news still runs out of attempts.
        self.attempt = 0
        self.last = task
        return True

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.finished

    def after_error(self, error: grpc.RpcError) -> float:
        """The pause before subscribing again, or raises: `TaskTimeoutError`, or the mapped error."""
        if self.deadline is not None and status_code(error) == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise TaskTimeoutError(self.uid, self.timeout) from None
        delay = retry_delay(self.policy, self.attempt, error)
        return self._pause(delay)

    def after_end(self) -> float:
        """The pause before subscribing again after a stream ended with no terminal state."""
        delay = self.policy.backoff(self.attempt)
        if delay is None:
            raise TaskHubError("unavailable", f"The watch of task `{self.uid}` ended before the task finished.")
        return self._pause(delay)

    def _pause(self, delay: float) -> float:
        self.attempt += 1
        left = self.remaining()
        return delay if left is None else min(delay, left)


class Resumer:
    """Follows a filter's watch across broken streams: resumes after the last sequence seen, backs off.

    The server announces where a new watch starts (its cursor, in initial metadata),
    so even a stream that breaks before its first change resumes without a gap.
    """

    def __init__(self, task_filter: TaskFilter, after: int | None, policy: RetryPolicy) -> None:
        self.filter = task_filter.to_proto()
        self.cursor = after
        self.policy = policy
        self.attempt = 0

    def request(self) -> pb.WatchTasksRequest:
        return pb.WatchTasksRequest(filter=self.filter, after=self.cursor)

    def opened(self, initial_metadata) -> None:
        """The server accepted the watch: learn its cursor; a break from now on starts a new backoff."""
        announced = watch_cursor(initial_metadata)
        if announced is not None:
            # Accepted, unlike a failed reconnect: a quiet watch survives any number of restarts.
            self.attempt = 0
            if self.cursor is None:
                self.cursor = announced

    def fresh(self, change: TaskChange) -> bool:
        """True for a change after the cursor (all of them, as the server resumes exactly there)."""
        if self.cursor is not None and change.sequence <= self.cursor:
            return False
        self.cursor = change.sequence
        self.attempt = 0
        return True

    def after_error(self, error: grpc.RpcError) -> float:
        """The pause before resuming after UNAVAILABLE; any other error raises as `TaskHubError`."""
        delay = retry_delay(self.policy, self.attempt, error)
        self.attempt += 1
        return delay

    def after_end(self) -> float:
        """The pause before resuming a stream the server ended without an error."""
        delay = self.policy.backoff(self.attempt)
        if delay is None:
            raise TaskHubError("unavailable", "The watch kept ending; the server may be shutting down.")
        self.attempt += 1
        return delay
