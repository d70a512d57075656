"""Small test helpers shared by the test modules: enqueueing, reading gRPC errors, installing npm packages."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from taskhub.v1 import task_pb2, task_service_pb2 as pb

T = task_pb2


def details_for(type_: int, **fields) -> task_pb2.TaskDetails:
    """TaskDetails for a type, with the given fields set (the oneof case is named after the type)."""
    case = task_pb2.TaskType.Name(type_).removeprefix("TASK_TYPE_").lower()
    details = task_pb2.TaskDetails()
    getattr(details, case).SetInParent()
    for key, value in fields.items():
        setattr(getattr(details, case), key, value)
    return details


async def enqueue(stub, index_uid: str = "movies", type_: int = T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
                  **details) -> int:
    if type_ == T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE and not details:
        details = {"received_documents": 10}
    request = pb.EnqueueTaskRequest(type=type_, index_uid=index_uid, details=details_for(type_, **details))
    response = await stub.EnqueueTask(request)
    return response.task.task_uid


async def error_of(awaitable) -> tuple[grpc.StatusCode, str, str]:
    """Awaits a call that must fail; answers its status code, ErrorInfo reason and message."""
    try:
        await awaitable
    except grpc.aio.AioRpcError as error:
        status = rpc_status.from_call(error)
        assert status is not None, "the error carries no google.rpc.Status"
        infos = []
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                infos.append(info)
        assert len(infos) == 1 and infos[0].domain == "taskhub"
        return error.code(), infos[0].reason, error.details()
    raise AssertionError("the call succeeded")


async def start(service, uid: int) -> None:
    """Moves an enqueued task to processing, as a worker's lease would."""
    await service.scheduler._write(service.store.start_task, uid, service.scheduler.clock())


async def finish(service, uid: int, *, details: dict | None = None, error: dict | None = None) -> None:
    """Finishes a processing task, as a worker's report would."""
    task = service.store.get_task(uid)
    await service.scheduler._write(service.store.finish_task, uid, service.scheduler.clock(),
                                   details=details if details is not None else task.details, error=error)


async def npm_install(folder: pathlib.Path, package: str, command: str = "install") -> None:
    """`npm <command>` in `folder` unless `package` is installed there already; fails the test if npm does."""
    if (folder / "node_modules" / package).is_dir():
        return
    process = await asyncio.create_subprocess_exec(
        "npm", command, "--no-audit", "--no-fund", "--loglevel=error", cwd=folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
