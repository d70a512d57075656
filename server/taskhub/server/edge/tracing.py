"""A task's trace, at the edge: the enqueuer's context stored with the task, leases and reports as its spans.

When the server traces (`taskhub.client.tracing`), an enqueue stores the caller's trace context (the gRPC
server span's, W3C headers) in the task's extra fields as `traceContext`, a key no JSON rendering shows;
a lease hands it to the worker in `Task.trace_context`, and the lease and the report of each task are spans
of that trace, so one trace shows enqueue, lease, the handler (the worker's span) and completion.
"""

from __future__ import annotations

from typing import Any

from taskhub.client import tracing
from taskhub.server.model import Task
from taskhub.server.rules.idempotency import TRACE_CONTEXT
from taskhub.v1 import task_pb2

KEY = TRACE_CONTEXT


def traced(item: tuple) -> tuple:
    """An enqueue item (type, index uid, details, extra) with the current trace context added to its extra fields,
    when tracing; as it was otherwise."""
    headers = tracing.carrier()
    if not headers:
        return item
    type_, index_uid, details, extra = item
    return type_, index_uid, details, {**(extra or {}), KEY: headers}


def context_of(task: Task) -> dict[str, str]:
    """The trace context stored with the task; empty if none."""
    return (task.extra or {}).get(KEY) or {}


def leased(tasks: list[Task], messages: list[task_pb2.Task], worker: str, batch_uid: int | None) -> None:
    """Hands each task's trace context to the worker, and records the lease in each task's trace."""
    if not tracing.enabled():
        return
    for task, message in zip(tasks, messages):
        headers = context_of(task)
        if headers:
            message.trace_context.update(headers)
            tracing.record("taskhub lease", headers, _attributes(task, worker=worker, batch_uid=batch_uid))


def finished(tasks: list[Task]) -> None:
    """Records each reported task's outcome in its trace."""
    if not tracing.enabled():
        return
    for task in tasks:
        headers = context_of(task)
        if headers:
            error = None if task.error is None else str(task.error.get("code"))
            tracing.record("taskhub complete", headers, _attributes(task, status=task.status.name.lower()), error)


def _attributes(task: Task, **more: Any) -> dict[str, Any]:
    attributes = {"taskhub.task.uid": task.uid, "taskhub.task.type": task.type.label}
    if task.index_uid is not None:
        attributes["taskhub.index_uid"] = task.index_uid
    attributes.update({f"taskhub.{k}": v for k, v in more.items() if v is not None})
    return attributes
