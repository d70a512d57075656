"""Small test helpers shared by the test modules: enqueueing, leasing and reporting as a worker does,
reading gRPC errors, installing npm packages."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import secrets
import shutil
import subprocess
import weakref

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from taskhub.server.config import Config
from taskhub.server.model import task_indexes
from taskhub.server.rules.leasing import MAX_LEASE
from taskhub.server.storage.postgres.database import is_postgres_url
from taskhub.v1 import task_pb2, task_service_pb2 as pb

T = task_pb2
# The lease token of each task start() leased, per scheduler, for finish() to report with.
_leases: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def details_for(type_: int, **fields) -> task_pb2.TaskDetails:
    """TaskDetails for a type, with the given fields set (the oneof case is named after the type)."""
    case = task_pb2.TaskType.Name(type_).removeprefix("TASK_TYPE_").lower()
    details = task_pb2.TaskDetails()
    getattr(details, case).SetInParent()
    for key, value in fields.items():
        setattr(getattr(details, case), key, value)
    return details


async def enqueue(
    stub, index_uid: str = "movies", type_: int = T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, **details
) -> int:
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


async def start(service, *uids: int) -> str:
    """Leases tasks `uids` as one batch through the scheduler's public `lease`, as a worker would.

    The worker asks for their indexes and types only, so the lease must give exactly these tasks:
    a test cannot start a task production would not hand out next. Answers the lease token.
    """
    tasks = [await service.scheduler.get_task(uid) for uid in uids]
    indexes = frozenset().union(*(task_indexes(t.index_uid, t.type, t.details) for t in tasks))
    lease = await service.scheduler.lease(
        worker="tests",
        types=frozenset(t.type for t in tasks),
        index_uids=indexes or None,
        max_tasks=len(uids),
        duration=MAX_LEASE,
    )
    leased = [t.uid for t in lease.tasks] if lease else []
    assert leased == list(uids), f"a worker taking these indexes would lease {leased}, not {list(uids)}"
    held = _leases.setdefault(service.scheduler, {})
    held.update(dict.fromkeys(uids, lease.token))
    return lease.token


async def finish(service, uid: int, *, details: dict | None = None, error: dict | None = None) -> None:
    """Reports a started task done through the scheduler's public `complete`, as a worker's report would.

    `details` are the counters the worker reports (e.g. indexedDocuments), `error` a failure.
    """
    await finish_batch(service, {uid: (details, error)})


async def finish_batch(service, outcomes: dict[int, tuple[dict | None, dict | None]]) -> None:
    """Reports a whole leased batch: uid -> (reported details, error)."""
    held = _leases.get(service.scheduler, {})
    tokens = {held.pop(uid, None) for uid in outcomes}
    assert len(tokens) == 1 and None not in tokens, f"tasks {sorted(outcomes)} were not leased together by start()"
    report = {}
    for uid, (details, error) in outcomes.items():
        type_ = (await service.scheduler.get_task(uid)).type if details else None
        report[uid] = (type_, details, error)
    await service.scheduler.complete(tokens.pop(), report)


async def npm_install(folder: pathlib.Path, package: str, command: str = "install") -> None:
    """`npm <command>` in `folder` unless `package` is installed there already; fails the test if npm does."""
    if (folder / "node_modules" / package).is_dir():
        return
    process = await asyncio.create_subprocess_exec(
        "npm",
        command,
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        cwd=folder,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


def restored_config(config: Config, flag: str, path: pathlib.Path, tmp_path: pathlib.Path, request) -> Config:
    """`config` for a new database started from a dump (`import_dump`) or a snapshot (`import_snapshot`).

    On PostgreSQL a snapshot is a pg_dump file: restored with pg_restore into a new database, as an operator would.
    """
    if not is_postgres_url(config.db):
        return dataclasses.replace(config, db=str(tmp_path / f"from_{flag}.db"), **{flag: str(path)})
    db = request.getfixturevalue("postgres_cluster").create_database(f"from_{flag}_{secrets.token_hex(4)}")
    if flag == "import_snapshot":
        subprocess.run([shutil.which("pg_restore"), "--no-owner", "--dbname", db, str(path)], check=True)
        return dataclasses.replace(config, db=db)
    return dataclasses.replace(config, db=db, **{flag: str(path)})
