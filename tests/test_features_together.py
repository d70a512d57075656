"""Where the second wave's features meet: requeue and batches, registered types and Meilisearch's detail rules,
extra fields and page sizes, type names in another case, labels stored as text. Each through a public interface."""

from __future__ import annotations

import dataclasses
import json

import grpc
import pytest

from conftest import gateway_client
from helpers import error_of
from taskhub.server import app
from taskhub.v1 import (
    errors_pb2,
    key_service_pb2 as kpb,
    key_service_pb2_grpc,
    task_pb2 as T,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

BOOM = errors_pb2.TaskError(
    message="boom", code="internal", type="internal", link="https://docs.meilisearch.com/errors#internal"
)


@pytest.fixture
async def typed(config, clock):
    running = await app.start(dataclasses.replace(config, task_types="sendEmail"), background=False, clock=clock)
    yield running
    await running.stop(0)


def stubs(channel):
    return task_service_pb2_grpc.TaskServiceStub(channel), worker_service_pb2_grpc.WorkerServiceStub(channel)


def send_email(details: str, index_uid: str | None = None) -> pb.EnqueueTaskRequest:
    request = pb.EnqueueTaskRequest(type_name="sendEmail", details=T.TaskDetails(custom_json=details))
    if index_uid is not None:
        request.index_uid = index_uid
    return request


async def fail_one(workers, type_name: str = "sendEmail", details: str | None = None) -> wpb.LeaseTasksResponse:
    lease = await workers.LeaseTasks(
        wpb.LeaseTasksRequest(worker="w", max_tasks=1, types=T.TypeSet(type_names=[type_name]))
    )
    outcome = wpb.TaskOutcome(uid=lease.tasks[0].uid, error=BOOM)
    if details is not None:
        outcome.details.custom_json = details
    await workers.CompleteTasks(wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=[outcome]))
    return lease


async def test_requeue_by_batch_takes_that_batch_s_tasks_only(typed):
    async with grpc.aio.insecure_channel(typed.grpc_target) as channel:
        stub, workers = stubs(channel)
        await stub.EnqueueTask(send_email("{}"))
        await stub.EnqueueTask(send_email("{}"))
        first = await fail_one(workers)
        await fail_one(workers)
        filter_ = T.TaskFilter(batch_uids=T.UidSet(uids=[first.lease.batch_uid]))
        requeued = await stub.RequeueTasks(pb.RequeueTasksRequest(filter=filter_))
        assert [(t.uid, t.requeued_from) for t in requeued.tasks] == [(2, first.tasks[0].uid)]


async def test_a_registered_type_s_details_are_never_summed_nor_rewritten_by_meilisearch_s_rules(typed):
    async with grpc.aio.insecure_channel(typed.grpc_target) as channel:
        stub, workers = stubs(channel)
        # Keys Meilisearch's batches sum or append, with values of other kinds, in one index: one batch of two.
        await stub.EnqueueTask(send_email('{"swaps":3,"receivedDocuments":"many","deletedDocuments":null}', "a"))
        await stub.EnqueueTask(send_email('{"receivedDocuments":3,"dumpUid":"tmpl-7"}', "a"))
        lease = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", max_tasks=10))
        assert [t.uid for t in lease.tasks] == [0, 1]
        outcomes = [wpb.TaskOutcome(uid=0, error=BOOM), wpb.TaskOutcome(uid=1, error=BOOM)]
        await workers.CompleteTasks(wpb.CompleteTasksRequest(token=lease.lease.token, outcomes=outcomes))
        failed = (await stub.GetTask(pb.GetTaskRequest(uid=0))).task
        # Failed: no null counter became 0; the details are as given.
        assert json.loads(failed.details.custom_json) == {
            "swaps": 3,
            "receivedDocuments": "many",
            "deletedDocuments": None,
        }
        batch = (await stub.GetBatch(pb.GetBatchRequest(uid=lease.lease.batch_uid))).batch
        assert json.loads(batch.details_json) == {}
        # Requeued: its details again as given (no output reset to null).
        requeued = await stub.RequeueTasks(pb.RequeueTasksRequest(filter=T.TaskFilter(uids=T.UidSet(uids=[1]))))
        assert json.loads(requeued.tasks[0].details.custom_json) == {"receivedDocuments": 3, "dumpUid": "tmpl-7"}
        # And the queue goes on: the requeued task leases.
        assert [t.uid for t in (await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w"))).tasks] == [2]


async def test_a_type_no_longer_registered_is_not_requeued(config, clock):
    service = await app.start(dataclasses.replace(config, task_types="sendEmail"), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub, workers = stubs(channel)
            await stub.EnqueueTask(send_email("{}"))
            await fail_one(workers)
    finally:
        await service.stop(0)
    service = await app.start(config, background=False, clock=clock)  # without --task-types
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub, _ = stubs(channel)
            requeued = await stub.RequeueTasks(pb.RequeueTasksRequest(filter=T.TaskFilter(uids=T.UidSet(uids=[0]))))
            assert list(requeued.tasks) == []
            assert (await stub.ListTasks(pb.ListTasksRequest())).total == 1
    finally:
        await service.stop(0)


async def test_a_type_named_in_another_case_keeps_its_code_and_its_tasks(config, clock):
    service = await app.start(dataclasses.replace(config, task_types="sendEmail"), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            await stubs(channel)[0].EnqueueTask(send_email("{}"))
    finally:
        await service.stop(0)
    service = await app.start(dataclasses.replace(config, task_types="sendemail"), background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub, _ = stubs(channel)
            await stub.EnqueueTask(pb.EnqueueTaskRequest(type_name="sendemail"))
            for name in ("sendEmail", "sendemail"):
                listed = await stub.ListTasks(
                    pb.ListTasksRequest(filter=T.TaskFilter(types=T.TypeSet(type_names=[name])))
                )
                assert [(t.uid, t.type_name) for t in listed.results] == [(1, "sendEmail"), (0, "sendEmail")]
    finally:
        await service.stop(0)


async def test_a_page_counts_extra_fields_toward_its_size(config, clock):
    # Tasks whose customMetadata alone is near the payload limit: a page of them is cut short, never refused.
    limit = 8 * 1024 * 1024
    service = await app.start(
        dataclasses.replace(config, http_payload_size_limit=str(limit)), background=False, clock=clock
    )
    try:
        options = [("grpc.max_send_message_length", 2 * limit), ("grpc.max_receive_message_length", 128 * 1024 * 1024)]
        async with grpc.aio.insecure_channel(service.grpc_target, options=options) as channel:
            stub, _ = stubs(channel)
            for _ in range(10):
                await stub.EnqueueTask(
                    pb.EnqueueTaskRequest(
                        type=T.TASK_TYPE_INDEX_CREATION, index_uid="a", custom_metadata="m" * (limit - 1024)
                    )
                )
            page = await stub.ListTasks(pb.ListTasksRequest(limit=20))
            assert 1 <= len(page.results) < 10 and page.HasField("next")
    finally:
        await service.stop(0)


MASTER = "a-master-key-of-sixteen-bytes-or-more"


async def test_labels_stored_as_text_refuse_a_nul_character(config, clock):
    service = await app.start(dataclasses.replace(config, master_key=MASTER), background=False, clock=clock)
    bearer = (("authorization", f"Bearer {MASTER}"),)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            _, workers = stubs(channel)
            code, reason, message = await error_of(
                workers.LeaseTasks(wpb.LeaseTasksRequest(worker="bad\x00name"), metadata=bearer)
            )
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_worker_name")
            assert message == "Invalid value in parameter `worker`: a worker name cannot hold a NUL character."
            keys = key_service_pb2_grpc.KeyServiceStub(channel)
            for field in ("name", "description"):
                request = kpb.CreateKeyRequest(actions=["tasks.get"], indexes=["*"], **{field: "a\x00b"})
                code, reason, _ = await error_of(keys.CreateKey(request, metadata=bearer))
                assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, f"invalid_api_key_{field}")
        async with gateway_client(service.grpc_target) as http:
            response = await http.post(
                "/keys",
                json={"actions": ["tasks.get"], "indexes": ["*"], "expiresAt": None, "name": "a\u0000b"},
                headers={"authorization": f"Bearer {MASTER}"},
            )
            assert (response.status_code, response.json()["code"]) == (400, "invalid_api_key_name")
    finally:
        await service.stop(0)
