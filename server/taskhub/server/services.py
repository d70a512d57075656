"""The gRPC servicers: convert in, call the scheduler, convert out.

`error_edge` is where a `TaskHubError` becomes a gRPC status, once, with
`google.rpc.ErrorInfo(reason=code, domain="taskhub")`; anything unexpected is
logged with its traceback and answered as INTERNAL "internal error".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from taskhub.errors import DOMAIN, TaskHubError
from taskhub.server import convert
from taskhub.server.scheduler import Scheduler
from taskhub.v1 import task_service_pb2 as pb
from taskhub.v1 import task_service_pb2_grpc

log = logging.getLogger(__name__)


def to_status(error: TaskHubError) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=error.code, domain=DOMAIN))
    return rpc_status.to_status(status_pb2.Status(
        code=error.kind.grpc_code.value[0], message=error.message, details=[detail]))


@contextlib.asynccontextmanager
async def error_edge(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    try:
        yield
    except TaskHubError as error:
        await context.abort_with_status(to_status(error))
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise
    except Exception:
        log.exception("unexpected error in a gRPC call")
        await context.abort_with_status(to_status(TaskHubError("internal", "internal error")))


class TaskService(task_service_pb2_grpc.TaskServiceServicer):
    """`taskhub.v1.TaskService` over a scheduler."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def ListTasks(self, request: pb.ListTasksRequest, context) -> pb.ListTasksResponse:
        async with error_edge(context):
            page = await self.scheduler.list_tasks(
                convert.query_from_proto(request.filter),
                limit=request.limit if request.HasField("limit") else None,
                from_uid=getattr(request, "from") if request.HasField("from") else None,
                reverse=request.reverse)
            return convert.page_to_proto(page)

    async def GetTask(self, request: pb.GetTaskRequest, context) -> pb.GetTaskResponse:
        async with error_edge(context):
            task = await self.scheduler.get_task(request.uid)
            return pb.GetTaskResponse(task=convert.task_to_proto(task))

    async def EnqueueTask(self, request: pb.EnqueueTaskRequest, context) -> pb.EnqueueTaskResponse:
        async with error_edge(context):
            type_ = convert.task_type(request.type)
            details = convert.details_from_proto(type_, request.details, request.HasField("details"))
            index_uid = request.index_uid if request.HasField("index_uid") else None
            task = await self.scheduler.enqueue(type_, index_uid, details)
            return pb.EnqueueTaskResponse(task=convert.summary_to_proto(task))

    async def CancelTasks(self, request: pb.CancelTasksRequest, context) -> pb.CancelTasksResponse:
        async with error_edge(context):
            task = await self.scheduler.cancel_tasks(
                convert.query_from_proto(request.filter),
                request.original_filter if request.HasField("original_filter") else None)
            return pb.CancelTasksResponse(task=convert.summary_to_proto(task))

    async def DeleteTasks(self, request: pb.DeleteTasksRequest, context) -> pb.DeleteTasksResponse:
        async with error_edge(context):
            task = await self.scheduler.delete_tasks(
                convert.query_from_proto(request.filter),
                request.original_filter if request.HasField("original_filter") else None)
            return pb.DeleteTasksResponse(task=convert.summary_to_proto(task))

    async def WatchTask(self, request: pb.WatchTaskRequest, context) -> AsyncIterator[pb.WatchTaskResponse]:
        async with error_edge(context):
            async for task in self.scheduler.watch_task(request.uid):
                yield pb.WatchTaskResponse(task=convert.task_to_proto(task))
