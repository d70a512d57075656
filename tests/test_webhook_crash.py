"""A `taskhub serve` killed with SIGKILL while tasks are owed to a dead endpoint: restarted, it delivers every one."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from taskhub.v1 import (
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    webhook_service_pb2 as hpb,
    webhook_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)
from test_serve import free_port, wait_serving
from webhook_receiver import Receiver

pytestmark = pytest.mark.slow  # `taskhub serve` subprocesses, one killed


def serve(db, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            str(db),
            "--grpc-listen",
            f"127.0.0.1:{port}",
            "--no-http",
            "--experimental-allowed-ip-networks",
            "127.0.0.1/32",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def owe_tasks(target: str, hook_url: str, count: int) -> list[int]:
    """A webhook to `hook_url`, then `count` tasks enqueued, leased and succeeded; answers their uids."""
    channel = wait_serving(target)
    with channel:
        webhook_service_pb2_grpc.WebhookServiceStub(channel).CreateWebhook(hpb.CreateWebhookRequest(url=hook_url))
        request = pb.EnqueueTaskRequest(type=task_pb2.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, index_uid="movies")
        request.details.document_addition_or_update.received_documents = 1
        uids = [
            s.task_uid
            for s in task_service_pb2_grpc.TaskServiceStub(channel)
            .EnqueueTasks(pb.EnqueueTasksRequest(tasks=[request] * count))
            .tasks
        ]
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        done = 0
        while done < count:
            lease = workers.LeaseTasks(wpb.LeaseTasksRequest(worker="t", max_tasks=count), timeout=10)
            outcomes = [wpb.TaskOutcome(uid=t.uid) for t in lease.tasks]
            workers.CompleteTasks(wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=outcomes), timeout=10)
            done += len(outcomes)
        return uids


@pytest.mark.timeout(90)
async def test_a_sigkill_loses_no_task_owed_to_a_webhook(tmp_path):
    db = tmp_path / "taskhub.db"
    hook_port, port = free_port(), free_port()
    process = serve(db, port)
    try:
        uids = await asyncio.to_thread(owe_tasks, f"127.0.0.1:{port}", f"http://127.0.0.1:{hook_port}/hook", 5)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    receiver = await Receiver().start(hook_port)
    port = free_port()
    process = serve(db, port)
    try:
        await receiver.wait_for(lambda r: sorted(set(r.uids)) == uids)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        await receiver.stop()
