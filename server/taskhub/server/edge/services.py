"""The gRPC servicers: convert in, call the scheduler, convert out.

`error_edge` is where a `TaskHubError` becomes a gRPC status, once, with
`google.rpc.ErrorInfo(reason=code, domain="taskhub")`; anything unexpected is
logged with its traceback and answered as INTERNAL "internal error".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from taskhub import limits
from taskhub.errors import DOMAIN, TaskHubError, payload_too_large
from taskhub.metadata import WATCH_CURSOR
from taskhub.server import version
from taskhub.server.edge import batch_convert, convert, tracing
from taskhub.server.model import TaskQuery
from taskhub.server.rules.auth import ENQUEUE_ACTIONS, Keyring, Principal
from taskhub.server.rules.leasing import SECOND
from taskhub.server.rules.scheduler import Scheduler
from taskhub.server.rules.watch import Owner
from taskhub.server.task_types import TaskTypes
from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

log = logging.getLogger(__name__)


def to_status(error: TaskHubError) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=error.code, domain=DOMAIN))
    return rpc_status.to_status(
        status_pb2.Status(code=error.kind.grpc_code.value[0], message=error.message, details=[detail])
    )


class error_edge:  # lower case: it reads as `async with error_edge(context):`
    """Around each servicer method: a `TaskHubError` becomes its status, anything else INTERNAL.

    A class rather than `@asynccontextmanager`: it runs on every call, and a generator-based
    context manager costs several microseconds more per call than these two methods.
    """

    __slots__ = ("context",)

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context

    async def __aenter__(self) -> None:
        return None

    # Literal[False]: it never swallows the error (abort raises, anything else goes on), so the type checker knows
    # that each `async with error_edge(...)` body returns or raises.
    async def __aexit__(self, kind, error, traceback) -> Literal[False]:
        if error is None or isinstance(error, (asyncio.CancelledError, grpc.aio.AbortError)):
            return False
        if isinstance(error, TaskHubError):
            await self.context.abort_with_status(to_status(error))
        elif isinstance(error, Exception):
            log.error("unexpected error in a gRPC call", exc_info=(kind, error, traceback))
            await self.context.abort_with_status(to_status(TaskHubError("internal", "internal error")))
        return False


def authorization(context: grpc.aio.ServicerContext) -> str | None:
    """The caller's `authorization` metadata, if any."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):  # only `-bin` keys carry bytes
            return value
    return None


class TaskService(task_service_pb2_grpc.TaskServiceServicer):
    """`taskhub.v1.TaskService` over a scheduler; each call checks its caller's key first."""

    def __init__(
        self, scheduler: Scheduler, keys: Keyring, *, payload_limit: int = limits.DEFAULT_PAYLOAD_LIMIT
    ) -> None:
        self.scheduler = scheduler
        self.keys = keys
        self.payload_limit = payload_limit
        # Read when the first server of this process starts, close to when its code was loaded.
        self.build = version.this_server()

    def _watcher(self, context) -> Owner:
        """Whose watch slot a stream takes: its key (once accepted) and its connection."""
        return Owner.of(
            authorization(context) if self.keys.enabled else None,
            context.invocation_metadata(),
            context.peer(),
            self.scheduler.hub.gateway_token,
        )

    def _query(self, message: task_pb2.TaskFilter, principal: Principal) -> TaskQuery:
        check_filter_sizes(message)
        query = convert.query_from_proto(message, self.scheduler.types)
        query.scope = principal.scope
        return query

    async def ListTasks(self, request: pb.ListTasksRequest, context) -> pb.ListTasksResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.get")
            page = await self.scheduler.list_tasks(
                self._query(request.filter, principal),
                limit=request.limit if request.HasField("limit") else None,
                from_uid=getattr(request, "from") if request.HasField("from") else None,
                reverse=request.reverse,
            )
            return convert.page_to_proto(page)

    async def ListBatches(self, request: pb.ListBatchesRequest, context) -> pb.ListBatchesResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.get")
            page = await self.scheduler.list_batches(
                self._query(request.filter, principal),
                limit=request.limit if request.HasField("limit") else None,
                from_uid=getattr(request, "from") if request.HasField("from") else None,
                reverse=request.reverse,
            )
            return batch_convert.batch_page_to_proto(page)

    async def GetBatch(self, request: pb.GetBatchRequest, context) -> pb.GetBatchResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.get")
            batch = await self.scheduler.get_batch(request.uid, scope=principal.scope)
            response = pb.GetBatchResponse()
            batch_convert.fill_batch(response.batch, batch)
            return response

    async def GetTask(self, request: pb.GetTaskRequest, context) -> pb.GetTaskResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.get")
            task = await self.scheduler.get_task(request.uid, scope=principal.scope)
            response = pb.GetTaskResponse()
            convert.fill_task(response.task, task)
            return response

    async def EnqueueTask(self, request: pb.EnqueueTaskRequest, context) -> pb.EnqueueTaskResponse:
        async with error_edge(context):
            # Each type's own action is checked with the task (rules/enqueue); a caller with none is refused now.
            principal = self.keys.require_any(authorization(context), ENQUEUE_ACTIONS)
            type_, index_uid, details, extra = tracing.traced(
                _enqueue_item(request, self.payload_limit, self.scheduler.types)
            )
            task = await self.scheduler.enqueue(
                type_,
                index_uid,
                details,
                caller=principal,
                extra=extra,
                idempotency_key=request.idempotency_key if request.HasField("idempotency_key") else None,
            )
            return pb.EnqueueTaskResponse(task=convert.summary_to_proto(task))

    async def EnqueueTasks(self, request: pb.EnqueueTasksRequest, context) -> pb.EnqueueTasksResponse:
        async with error_edge(context):
            principal = self.keys.require_any(authorization(context), ENQUEUE_ACTIONS)
            items = []
            for position, item in enumerate(request.tasks):
                try:
                    if item.HasField("idempotency_key"):
                        raise TaskHubError(
                            "invalid_idempotency_key",
                            "One idempotency key covers the whole batch: set `idempotency_key` on the request,"
                            " not on its tasks.",
                        )
                    items.append(tracing.traced(_enqueue_item(item, self.payload_limit, self.scheduler.types)))
                except TaskHubError as error:
                    raise error.within(f"tasks[{position}]") from None
            tasks = await self.scheduler.enqueue_many(
                items,
                caller=principal,
                idempotency_key=request.idempotency_key if request.HasField("idempotency_key") else None,
            )
            return pb.EnqueueTasksResponse(tasks=[convert.summary_to_proto(task) for task in tasks])

    async def CancelTasks(self, request: pb.CancelTasksRequest, context) -> pb.CancelTasksResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.cancel")
            task = await self.scheduler.cancel_tasks(
                self._query(request.filter, principal),
                request.original_filter if request.HasField("original_filter") else None,
            )
            return pb.CancelTasksResponse(task=convert.summary_to_proto(task))

    async def DeleteTasks(self, request: pb.DeleteTasksRequest, context) -> pb.DeleteTasksResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.delete")
            task = await self.scheduler.delete_tasks(
                self._query(request.filter, principal),
                request.original_filter if request.HasField("original_filter") else None,
            )
            return pb.DeleteTasksResponse(task=convert.summary_to_proto(task))

    async def RequeueTasks(self, request: pb.RequeueTasksRequest, context) -> pb.RequeueTasksResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.requeue")
            tasks = await self.scheduler.requeue_tasks(self._query(request.filter, principal), caller=principal)
            response = pb.RequeueTasksResponse()
            for task in tasks:
                convert.fill_task(response.tasks.add(), task)
            return response

    async def GetVersion(self, request: pb.GetVersionRequest, context) -> pb.GetVersionResponse:
        async with error_edge(context):
            # As in Meilisearch, the action alone: a version belongs to no index, so a scoped key may read it.
            self.keys.require(authorization(context), "version")
            return convert.version_to_proto(self.build)

    async def WatchTask(self, request: pb.WatchTaskRequest, context) -> AsyncIterator[pb.WatchTaskResponse]:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.get")
            async for task in self.scheduler.watch_task(
                request.uid, scope=principal.scope, owner=self._watcher(context)
            ):
                response = pb.WatchTaskResponse(sequence=task.seq)
                convert.fill_task(response.task, task)
                yield response

    async def WatchTasks(self, request: pb.WatchTasksRequest, context) -> AsyncIterator[pb.WatchTasksResponse]:
        async with error_edge(context):
            query = self._query(request.filter, self.keys.require(authorization(context), "tasks.get"))
            after = request.after if request.HasField("after") else None

            async def started(cursor: int) -> None:
                # Headers now, not with the first change: the caller learns the watch is open.
                await context.send_initial_metadata(((WATCH_CURSOR, str(cursor)),))

            async for event in self.scheduler.watch_tasks(query, after, started=started, owner=self._watcher(context)):
                response = pb.WatchTasksResponse(sequence=event.seq, deleted=event.deleted)
                convert.fill_task(response.task, event.task)
                yield response


def _enqueue_item(request: pb.EnqueueTaskRequest, payload_limit: int, types: TaskTypes) -> tuple:
    """(type, index uid, details, extra fields: customMetadata, runAt, retry) from one enqueue request, as the
    scheduler takes them."""
    name = request.type_name if request.HasField("type_name") else None
    type_ = convert.task_type(request.type, name, types)
    details = convert.details_from_proto(type_, request.details, request.HasField("details"))
    check_details_size(request.details, details, payload_limit)
    extra: dict[str, Any] = {}
    if request.HasField("custom_metadata"):
        # Any string, as in Meilisearch; bounded as details are, by the payload limit.
        if len(request.custom_metadata) * 4 > payload_limit and len(request.custom_metadata.encode()) > payload_limit:
            raise payload_too_large(payload_limit)
        extra["customMetadata"] = request.custom_metadata
    run_at, retry = convert.later_from_proto(request)
    if run_at is not None:
        extra["runAt"] = run_at
    if retry:
        extra["retry"] = retry
    return type_, request.index_uid if request.HasField("index_uid") else None, details, extra or None


def _wait(request: wpb.LeaseTasksRequest) -> int:
    """How long a lease call may wait, in microseconds: zero or more (the scheduler caps it)."""
    if not request.HasField("wait"):
        return 0
    return convert.checked_duration(request.wait, "invalid_lease_wait", "wait", zero=True)


_Default = TypeVar("_Default", int, None)


def _lease_duration(request: wpb.LeaseTasksRequest | wpb.RenewLeaseRequest, default: _Default) -> int | _Default:
    """The lease duration asked, in microseconds: more than zero (the scheduler bounds it)."""
    if not request.HasField("lease_duration"):
        return default
    return convert.checked_duration(request.lease_duration, "invalid_lease_duration", "lease_duration", zero=False)


# Caps on strings and lists from outside (README, "Payload limits"): an index uid is at most
# 400 bytes as in Meilisearch; a filter list long enough for any real page of uids.
MAX_FILTER_VALUES = 10_000
MAX_INDEX_UID = 400
MAX_ECHOED = 4096
MAX_WORKER_NAME = 256
# (TaskFilter field, its list field, the HTTP parameter, the error code)
_FILTER_LISTS = (
    ("uids", "uids", "uids", "invalid_task_uids"),
    ("batch_uids", "uids", "batchUids", "invalid_batch_uids"),
    ("canceled_by", "uids", "canceledBy", "invalid_task_canceled_by"),
    ("statuses", "statuses", "statuses", "invalid_task_statuses"),
    ("types", "types", "types", "invalid_task_types"),
    ("types", "type_names", "types", "invalid_task_types"),
    ("index_uids", "index_uids", "indexUids", "invalid_task_index_uids"),
)


def check_size(parameter: str, code: str, what: str, value: str, cap: int) -> None:
    """A string over `cap` UTF-8 bytes is refused with the parameter's own code, without echoing it."""
    if len(value) * 4 > cap and (size := len(value.encode("utf-8", "surrogatepass"))) > cap:
        raise TaskHubError(
            code, f"Invalid value in parameter `{parameter}`: {what} is at most {cap} bytes (UTF-8), not {size}."
        )


def check_no_nul(parameter: str, code: str, what: str, value: str) -> None:
    """A label stored as text holds no NUL character (PostgreSQL's text refuses one; no store should differ)."""
    if "\x00" in value:
        raise TaskHubError(code, f"Invalid value in parameter `{parameter}`: {what} cannot hold a NUL character.")


def check_filter_sizes(message: task_pb2.TaskFilter) -> None:
    """Filter lists of at most MAX_FILTER_VALUES values, index uids of at most MAX_INDEX_UID bytes."""
    for name, field, parameter, code in _FILTER_LISTS:
        if not message.HasField(name):
            continue
        values = getattr(getattr(message, name), field)
        if len(values) > MAX_FILTER_VALUES:
            raise TaskHubError(
                code,
                f"Invalid value in parameter `{parameter}`: at most {MAX_FILTER_VALUES}"
                f" values are accepted, not {len(values)}.",
            )
        if name == "index_uids":
            # Up to a few KiB convert's own check answers Meilisearch's message, which quotes the value.
            for value in values:
                if len(value) > MAX_ECHOED:
                    check_size(parameter, code, "an index uid", value, MAX_INDEX_UID)


def check_details_size(message, details: dict | None, payload_limit: int) -> None:
    """Details over the payload limit, counted as the JSON they are answered as, are refused.

    JSON never takes more than PROTOBUF_GROWTH times the protobuf size (an escaped control
    character is the worst case), so small details are let through without encoding them.
    """
    if details is None or message.ByteSize() * limits.PROTOBUF_GROWTH <= payload_limit:
        return
    if limits.json_size(details) > payload_limit:
        raise payload_too_large(payload_limit)


class WorkerService(worker_service_pb2_grpc.WorkerServiceServicer):
    """`taskhub.v1.WorkerService`: leases, renewals and reports for remote workers."""

    def __init__(self, scheduler: Scheduler, keys: Keyring) -> None:
        self.scheduler = scheduler
        self.keys = keys

    async def LeaseTasks(self, request: wpb.LeaseTasksRequest, context) -> wpb.LeaseTasksResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "workers.lease")
            # The worker's types and indexes are checked like any filter's.
            wanted = task_pb2.TaskFilter()
            for name in ("types", "index_uids"):
                if request.HasField(name):
                    getattr(wanted, name).CopyFrom(getattr(request, name))
            check_filter_sizes(wanted)
            check_size("worker", "invalid_worker_name", "a worker name", request.worker, MAX_WORKER_NAME)
            check_no_nul("worker", "invalid_worker_name", "a worker name", request.worker)
            query = convert.query_from_proto(wanted, self.scheduler.types)
            lease = await self.scheduler.lease(
                worker=request.worker or context.peer(),
                types=query.types,
                index_uids=query.index_uids,
                scope=principal.scope,
                max_tasks=request.max_tasks if request.HasField("max_tasks") else None,
                wait=_wait(request) / SECOND,
                duration=_lease_duration(request, 30 * SECOND),
            )
            if lease is None:
                return wpb.LeaseTasksResponse()
            response = wpb.LeaseTasksResponse(
                lease=wpb.Lease(
                    token=lease.token, deadline=convert.timestamp(lease.deadline), batch_uid=lease.batch_uid or 0
                )
            )
            for task in lease.tasks:
                convert.fill_task(response.tasks.add(), task)
            tracing.leased(lease.tasks, list(response.tasks), request.worker or context.peer(), lease.batch_uid)
            return response

    async def RenewLease(self, request: wpb.RenewLeaseRequest, context) -> wpb.RenewLeaseResponse:
        async with error_edge(context):
            self.keys.require(authorization(context), "workers.lease")
            progress = batch_convert.progress_from_proto(request.progress) if request.HasField("progress") else None
            deadline = await self.scheduler.renew(request.token, _lease_duration(request, None), progress)
            if deadline is None:
                return wpb.RenewLeaseResponse(canceled=True)
            return wpb.RenewLeaseResponse(deadline=convert.timestamp(deadline))

    async def CompleteTasks(self, request: wpb.CompleteTasksRequest, context) -> wpb.CompleteTasksResponse:
        async with error_edge(context):
            self.keys.require(authorization(context), "workers.lease")
            outcomes, retries = {}, {}
            for outcome in request.outcomes:
                if outcome.uid in outcomes:
                    raise TaskHubError("invalid_task_outcome", f"Task `{outcome.uid}` is reported twice.")
                outcomes[outcome.uid] = convert.outcome_from_proto(outcome)
                retryable, after = convert.retry_from_proto(outcome)
                if retryable:
                    retries[outcome.uid] = after
            tasks = await self.scheduler.complete(request.token, outcomes, retries)
            tracing.finished(tasks)
            response = wpb.CompleteTasksResponse()
            for task in tasks:
                convert.fill_task(response.tasks.add(), task)
            return response

    async def ReleaseLease(self, request: wpb.ReleaseLeaseRequest, context) -> wpb.ReleaseLeaseResponse:
        async with error_edge(context):
            self.keys.require(authorization(context), "workers.lease")
            return wpb.ReleaseLeaseResponse(released_tasks=await self.scheduler.release(request.token))
