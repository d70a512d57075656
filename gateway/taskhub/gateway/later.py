"""`runAt` and `retry` in `POST /tasks` bodies: a delayed run and a task's own retry policy.

`runAt` is an RFC 3339 date-time (`invalid_task_run_at` otherwise); `retry` an object of
`attempts`, `initialDelay`, `maxDelay` (durations: `500ms`, `10s`, `5m`, `1h`, `1d` or
seconds), `multiplier` and `jitter` (`invalid_task_retry_policy` for its shape). How far
ahead a task may wait and each field's range are the server's call.
"""

from __future__ import annotations

from taskhub import dates
from taskhub.errors import TaskHubError
from taskhub.retry_policy import policy
from taskhub.v1 import task_service_pb2


def fill(request: task_service_pb2.EnqueueTaskRequest, body: dict) -> None:
    """Sets the request's `run_at` and `retry` from a body's `runAt` and `retry`, when given (null: not given)."""
    run_at = body.get("runAt")
    if run_at is not None:
        fill_run_at(request, run_at)
    retry = body.get("retry")
    if retry is not None:
        request.retry.CopyFrom(policy(retry))


def fill_run_at(request: task_service_pb2.EnqueueTaskRequest, value: object) -> None:
    wrong = TaskHubError(
        "invalid_task_run_at",
        f"Invalid value in parameter `runAt`: `{value}` is not an RFC 3339 date-time, such as"
        " `2026-01-01T09:00:00Z` or `2026-01-01T10:00:00+01:00`.",
    )
    if not isinstance(value, str) or ":" not in value:  # a bare date names no time to run at
        raise wrong
    try:
        request.run_at.seconds, request.run_at.nanos = dates.parse_bound(value)
    except (ValueError, OverflowError):
        raise wrong from None
